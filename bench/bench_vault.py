"""Vault throughput: envelope encrypt/decrypt (local keyring) vs raw single-layer AES-GCM.

Run: ``.venv/bin/python bench/bench_vault.py [--seconds 2]``. Measures, in one thread and one
event loop, ``Vault.seal`` (fresh data key + AES-256-GCM of the value + key wrap) and
``Vault.open`` (unwrap + decrypt), and as the baseline measured in the same run, one
AES-256-GCM encrypt/decrypt with a fixed key and fixed associated data (plus, for context, a
single-layer encrypt that builds its associated data per record). No database:
this is the cryptographic cost a request pays; a ``put``/``get`` adds one SQL statement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.vault import LocalKeyring, Vault
from app.vault.envelope import OwnerContext, data_aad
from bench.results import Row

TOKEN = "1//0g" + secrets.token_urlsafe(96)  # shaped like a long-lived refresh token
CTX = OwnerContext("eu_8Zx1v0QmS6m2qk3lYw7c1A", "connection", "con_3eL0yq9T", "refresh_token")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(200):
        fn()
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(500):
            fn()
        n += 500
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


async def arate(fn: Callable[[], object], seconds: float) -> float:
    for _ in range(200):
        await fn()  # type: ignore[misc]
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(500):
            await fn()  # type: ignore[misc]
        n += 500
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


async def measure(seconds: float) -> dict[str, float]:
    vault = Vault(LocalKeyring({"bench": os.urandom(32)}, "bench"))
    sealed = await vault.seal(CTX, TOKEN)
    assert (await vault.open(sealed, CTX)).reveal() == TOKEN

    key = AESGCM(AESGCM.generate_key(bit_length=256))
    aad = data_aad(CTX)
    raw = TOKEN.encode()
    nonce = os.urandom(12)
    ct = key.encrypt(nonce, raw, aad)

    def raw_encrypt() -> bytes:
        return key.encrypt(os.urandom(12), raw, aad)

    def raw_decrypt() -> bytes:
        return key.decrypt(nonce, ct, aad)

    def direct_encrypt() -> bytes:  # single layer, but AAD built per record like the vault
        return key.encrypt(os.urandom(12), raw, data_aad(CTX))

    return {
        "raw_enc": rate(raw_encrypt, seconds),
        "raw_dec": rate(raw_decrypt, seconds),
        "direct_enc": rate(direct_encrypt, seconds),
        "env_enc": await arate(lambda: vault.seal(CTX, TOKEN), seconds),
        "env_dec": await arate(lambda: vault.open(sealed, CTX), seconds),
        "bytes": float(len(raw)),
    }


def run(seconds: float = 1.0) -> list[Row]:
    """B7 rows for the combined table (bench/run.py)."""
    m = asyncio.run(measure(seconds))
    return [
        Row(
            "B7",
            "vault encrypt (new DEK + data + wrap)",
            m["env_enc"],
            "ops/s",
            "raw AES-256-GCM encrypt",
            m["raw_enc"],
        ),
        Row(
            "B7",
            "vault decrypt (unwrap + data)",
            m["env_dec"],
            "ops/s",
            "raw AES-256-GCM decrypt",
            m["raw_dec"],
        ),
    ]


async def main(seconds: float) -> None:
    m = await measure(seconds)
    raw_enc, raw_dec, env_enc, env_dec = m["raw_enc"], m["raw_dec"], m["env_enc"], m["env_dec"]
    print(f"pbf-headless vault benchmark  (python {platform.python_version()}, one thread,")
    print(f"  value {m['bytes']:.0f} bytes, {seconds:.1f} s per measurement)")
    print(f"{'operation':<44} {'ops/s':>12}")
    print(f"{'raw AES-256-GCM encrypt (baseline)':<44} {raw_enc:>12,.0f}")
    print(f"{'raw AES-256-GCM decrypt (baseline)':<44} {raw_dec:>12,.0f}")
    print(f"{'single-layer encrypt + per-record AAD':<44} {m['direct_enc']:>12,.0f}")
    print(f"{'vault encrypt (new DEK + data + wrap)':<44} {env_enc:>12,.0f}")
    print(f"{'vault decrypt (unwrap + data)':<44} {env_dec:>12,.0f}")
    print(f"encrypt: vault/raw = {env_enc / raw_enc:.2f} (envelope costs {raw_enc / env_enc:.1f}x)")
    print(f"decrypt: vault/raw = {env_dec / raw_dec:.2f} (envelope costs {raw_dec / env_dec:.1f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (5 in total)")
    args = parser.parse_args()
    asyncio.run(main(args.seconds))
