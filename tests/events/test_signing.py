"""Outbound signature scheme: what receivers verify (and what must fail)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from app.events.signing import sign, verify_fivetran_signature, verify_signature

pytestmark = pytest.mark.db_independent  # never uses the database under test

BODY = b'{"id":"evt_1","type":"connection.broken","data":{"connection_id":"con_1"}}'


def test_good_signature_verifies() -> None:
    header = sign(BODY, ["s1"])
    assert header.startswith("t=") and ",v1=" in header
    assert verify_signature(header, BODY, ["s1"])


def test_tampered_body_fails() -> None:
    header = sign(BODY, ["s1"])
    assert not verify_signature(header, BODY.replace(b"broken", b"connected"), ["s1"])


def test_tampered_timestamp_fails() -> None:
    ts = int(time.time())
    header = sign(BODY, ["s1"], timestamp=ts)
    forged = header.replace(f"t={ts}", f"t={ts + 1}")
    assert not verify_signature(forged, BODY, ["s1"])


def test_wrong_secret_missing_and_malformed_headers_fail() -> None:
    header = sign(BODY, ["s1"])
    assert not verify_signature(header, BODY, ["other"])
    assert not verify_signature(None, BODY, ["s1"])
    assert not verify_signature("", BODY, ["s1"])
    assert not verify_signature("v1=" + "0" * 64, BODY, ["s1"])  # no timestamp
    assert not verify_signature(f"t={int(time.time())}", BODY, ["s1"])  # no v1
    assert not verify_signature("t=abc,v1=00", BODY, ["s1"])
    assert not verify_signature(header, BODY, [])


def test_replay_outside_tolerance_fails() -> None:
    old = int(time.time()) - 3600
    header = sign(BODY, ["s1"], timestamp=old)
    assert not verify_signature(header, BODY, ["s1"], tolerance_seconds=300)
    assert verify_signature(header, BODY, ["s1"], tolerance_seconds=300, now=old + 10)
    future = sign(BODY, ["s1"], timestamp=int(time.time()) + 3600)
    assert not verify_signature(future, BODY, ["s1"], tolerance_seconds=300)


def test_rotation_overlap_one_v1_per_secret() -> None:
    header = sign(BODY, ["new", "old"])
    assert header.count("v1=") == 2
    assert verify_signature(header, BODY, ["old"])  # receiver not yet rotated
    assert verify_signature(header, BODY, ["new"])  # receiver already rotated
    assert not verify_signature(header, BODY, ["unrelated"])


def test_signature_is_hmac_over_timestamp_dot_body() -> None:
    ts = 1_764_130_000
    header = sign(BODY, ["k"], timestamp=ts)
    expected = hmac.new(b"k", f"{ts}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={ts},v1={expected}"
    assert verify_signature(
        header.upper().replace("T=", "t=").replace("V1=", "v1="), BODY, ["k"], now=ts
    )


def test_fivetran_signature_case_insensitive() -> None:
    mac = hmac.new(b"wh", BODY, hashlib.sha256).hexdigest()
    assert verify_fivetran_signature(mac, BODY, "wh")
    assert verify_fivetran_signature(mac.upper(), BODY, "wh")
    assert not verify_fivetran_signature(mac, BODY + b" ", "wh")
    assert not verify_fivetran_signature(mac, BODY, "other")
    assert not verify_fivetran_signature(None, BODY, "wh")
    assert not verify_fivetran_signature("sha256=" + mac, BODY, "wh")
