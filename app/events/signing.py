"""Signatures of our outbound deliveries, and the check receivers run.

Header (one ``v1=`` per active secret while a secret is being rotated)::

    PBF-Signature: t=1764130000,v1=<hex hmac-sha256(secret, "<t>.<raw body>")>[,v1=...]
    PBF-Event-Id: evt_...

A receiver recomputes the HMAC over ``"<t>.<raw body>"`` with each of *its* secrets, accepts
when any ``v1`` matches (constant time) and ``t`` is within its tolerance, and remembers
``PBF-Event-Id`` to drop replays and at-least-once duplicates.

:func:`verify_signature` depends on the standard library only: receivers may copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from app.config import Settings

SIGNATURE_HEADER = "PBF-Signature"
EVENT_ID_HEADER = "PBF-Event-Id"
ATTEMPT_HEADER = "PBF-Delivery-Attempt"
DEFAULT_TOLERANCE_SECONDS = 300


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secrets: Sequence[str], *, timestamp: int | None = None) -> str:
    """The ``PBF-Signature`` value for ``body``: one ``v1=`` per secret (current first)."""
    if not secrets:
        raise ValueError("at least one signing secret is required")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return ",".join([f"t={ts}", *(f"v1={_mac(s, ts, body)}" for s in secrets)])


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: float | None = None,
) -> bool:
    """True when ``header`` is a valid ``PBF-Signature`` of ``body`` for one of ``secrets``.

    Rejects: a missing or malformed header, no ``t=``, a timestamp further than
    ``tolerance_seconds`` from now (either way: replays and clock games), and any body or
    timestamp change. Comparison is constant-time and hex-case-insensitive.
    """
    if not header or not secrets:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not value.isdigit():
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    ok = False
    for secret in secrets:
        expected = _mac(secret, timestamp, body)
        for candidate in candidates:
            # No early exit: every comparison runs.
            ok |= hmac.compare_digest(expected.encode(), candidate.encode())
    return ok


def verify_fivetran_signature(header: str | None, body: bytes, secret: str) -> bool:
    """Fivetran's ``X-Fivetran-Signature-256``: hex HMAC-SHA256 of the raw body, any case."""
    if not header or not secret:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


#: Secret the sandbox uses when ``PBF_FIVETRAN__WEBHOOK_SECRET`` is unset (sandbox mode only).
SANDBOX_WEBHOOK_SECRET = "sandbox_webhook_secret"


def webhook_secret(settings: Settings) -> str | None:
    """The secret Fivetran signs with: configured, or in sandbox mode a fixed sandbox value
    (``pbf-headless fivetran webhooks ensure`` registers it at the simulator)."""
    if settings.fivetran.webhook_secret is not None:
        return settings.fivetran.webhook_secret.get_secret_value()
    if settings.is_sandbox:
        return SANDBOX_WEBHOOK_SECRET
    return None
