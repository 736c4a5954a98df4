"""Nothing readable at rest or in logs: raw database dumps and DEBUG logs carry none of the
plaintext test tokens, and shredded rows leave no wrapped data key in the SQLite file."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from app.vault import DecryptionFailed, UnknownKeyId
from tests.fixtures.app import TEST_DB
from tests.fixtures.vault import PLAINTEXTS, get, owner, put, row_of, set_columns

OWNERS = {
    "refresh_token": owner("eu_1", "connection", "con_1", "refresh_token"),
    "access_token": owner("eu_1", "connection", "con_1", "access_token"),
    "code_verifier": owner("eu_1", "oauth_flow", "flow_1", "code_verifier"),
    "client_secret": owner("_platform", "oauth_app", "salesforce", "client_secret"),
}


async def _store_all(app) -> None:
    for name, who in OWNERS.items():
        await put(app, PLAINTEXTS[name], **who)
    for name, who in OWNERS.items():
        assert (await get(app, **who)).reveal() == PLAINTEXTS[name]


def _assert_no_plaintext(blob: bytes, where: str) -> None:
    for value in PLAINTEXTS.values():
        for encoded in (value.encode(), value.encode("utf-16-le")):
            assert encoded not in blob, f"plaintext {value[:6]}… found in {where}"


def _read_files(path: Path, *suffixes: str) -> bytes:
    """The bytes of ``path`` plus its companions (``-wal``, ``-shm``) that exist."""
    out = b""
    for suffix in ("", *suffixes):
        p = Path(f"{path}{suffix}")
        if p.exists():
            out += p.read_bytes()
    return out


def _sqlite_path(app) -> Path:
    url = app.state.settings.effective_database_url
    return Path(url.split(":///", 1)[1])


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite file dump")
async def test_sqlite_file_bytes_hold_no_plaintext(app):
    await _store_all(app)
    path = _sqlite_path(app)
    # Before and after a checkpoint: the WAL and the main file.
    _assert_no_plaintext(_read_files(path, "-wal", "-shm"), "the SQLite file + WAL")
    async with app.state.engine.connect() as conn:
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    _assert_no_plaintext(_read_files(path), path.name)
    # Sanity: the same grep does find values that *are* stored in clear (the owner ids).
    assert b"salesforce" in _read_files(path)


@pytest.mark.skipif(TEST_DB != "postgresql", reason="PostgreSQL dump")
async def test_postgresql_rows_and_pg_dump_hold_no_plaintext(app):
    await _store_all(app)
    async with app.state.sessionmaker() as session:
        result = await session.execute(text("SELECT * FROM vault_secrets"))
        dump = repr([tuple(r) for r in result]).encode()
        assert len(result.keys()) == 13
    _assert_no_plaintext(dump, "SELECT *")
    assert b"salesforce" in dump
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump not installed (SELECT * dump checked)")
    url = app.state.settings.effective_database_url.replace("postgresql+asyncpg", "postgresql")
    dumped = await asyncio.to_thread(
        subprocess.run,
        [pg_dump, "--data-only", "--table=vault_secrets", url],
        capture_output=True,
        check=True,
        timeout=60,
    )
    out = dumped.stdout
    assert b"COPY public.vault_secrets" in out and b"salesforce" in out
    _assert_no_plaintext(out, "pg_dump")


@pytest.mark.skipif(TEST_DB != "sqlite", reason="SQLite free-page check")
async def test_shredded_wrapped_keys_do_not_linger_in_the_sqlite_file(app):
    await _store_all(app)
    row = await row_of(app, "connection", "con_1", "refresh_token")
    wrapped = bytes(row["wrapped_dek"])
    async with app.state.engine.connect() as conn:
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    path = _sqlite_path(app)
    assert wrapped in _read_files(path)  # the probe can find it while it exists
    async with app.state.sessionmaker() as session, session.begin():
        assert await app.state.vault.shred_end_user(session, "eu_1") == 3
    async with app.state.engine.connect() as conn:
        await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    assert wrapped not in _read_files(path, "-wal")


async def test_no_plaintext_in_logs_at_debug(keyring_settings, running_app, caplog):
    caplog.set_level(logging.DEBUG)
    settings = keyring_settings("k2", "k1", "k2", log_level="DEBUG")
    async with running_app(settings) as app:
        await _store_all(app)
        # failure paths log too: tampering, unknown keys, readiness probes
        row = await row_of(app, "connection", "con_1", "refresh_token")
        await set_columns(app, row["id"], ciphertext=bytes(row["ciphertext"])[::-1])
        with pytest.raises(DecryptionFailed) as e1:
            await get(app, **OWNERS["refresh_token"])
        row = await row_of(app, "connection", "con_1", "access_token")
        await set_columns(app, row["id"], kek_id="k-gone")
        with pytest.raises(UnknownKeyId) as e2:
            await get(app, **OWNERS["access_token"])
        from app.vault.rotation import rewrap

        await rewrap(app.state.sessionmaker, app.state.vault)
        await app.state.readiness_checks["keys"]()
        async with app.state.sessionmaker() as session, session.begin():
            await app.state.vault.shred_end_user(session, "eu_1")
    texts = [caplog.text, str(e1.value), repr(e1.value), str(e2.value), repr(e2.value)]
    for rec in caplog.records:
        texts.append(rec.getMessage())
        texts.append(repr(rec.__dict__))
    _assert_no_plaintext("\n".join(texts).encode(), "logs")
    assert any(r.name == "pbf.vault" for r in caplog.records)  # the vault did log


async def test_api_error_for_a_broken_secret_reveals_nothing(app, client):
    """A vault error surfacing in a request renders as a problem document without secrets."""
    from fastapi import APIRouter

    await put(app, PLAINTEXTS["refresh_token"], **OWNERS["refresh_token"])
    row = await row_of(app, "connection", "con_1", "refresh_token")
    await set_columns(app, row["id"], nonce=os.urandom(12))
    router = APIRouter()

    @router.get("/_vault_probe")
    async def probe() -> dict:
        secret = await get(app, **OWNERS["refresh_token"])
        return {"len": len(secret)}

    app.include_router(router)
    r = await client.get("/_vault_probe")
    assert r.status_code == 500
    assert r.json()["code"] == "vault_decryption_failed"
    _assert_no_plaintext(r.content, "response")
    metrics = (await client.get("/metrics")).text
    assert 'pbf_vault_operations_total{op="get",result="decryption_failed"} 1.0' in metrics
    assert 'pbf_vault_operations_total{op="put",result="ok"} 1.0' in metrics
