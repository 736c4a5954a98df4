"""Rotation: new writes use the new key, old rows keep decrypting, ``keys rewrap`` (the real
CLI) moves every data key to the active key without touching data ciphertexts, and an old
key removed too early breaks only the rows still under it."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.main import create_app
from app.vault import UnknownKeyId, Vault
from app.vault.key_providers import LocalKeyring
from app.vault.rotation import key_counts, rewrap
from tests.fixtures.vault import get, keyring_json, owner, put, rows

runner = CliRunner()


def _owner(i: int) -> dict[str, str]:
    return owner(f"eu_{i % 3}", "connection", f"con_{i:03d}", "refresh_token")


def in_app(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run ``fn(app)`` inside a fresh app lifespan (one 'deployment' of the service)."""

    async def go() -> Any:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            return await fn(app)

    return asyncio.run(go())


def keys_cli(settings: Settings, *args: str) -> Any:
    """``pbf-headless keys …`` with the deployment's configuration in the environment."""
    env = {
        "PBF_MODE": settings.mode,
        "PBF_DATA_DIR": str(settings.data_dir),
        "PBF_DATABASE_URL": settings.effective_database_url,
        "PBF_ENCRYPTION_KEYS": settings.vault.encryption_keys.get_secret_value(),
    }
    return runner.invoke(cli, ["keys", *args], env=env)


def _status(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    result = keys_cli(settings, "status", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    return {(k["provider"], k["kek_id"]): k for k in doc["keys"]}


def test_rotate_then_rewrap_with_the_cli(settings_factory):
    v1 = settings_factory(encryption_keys=keyring_json("k1", "k1"))
    v2 = settings_factory(encryption_keys=keyring_json("k2", "k1", "k2"))
    only_k2 = settings_factory(encryption_keys=keyring_json("k2", "k2"))

    async def write_old(app):
        for i in range(5):
            await put(app, f"token-{i}", **_owner(i))

    in_app(v1, write_old)

    async def after_rotation(app):
        for i in range(5):  # old rows still decrypt
            assert (await get(app, **_owner(i))).reveal() == f"token-{i}"
        await put(app, "token-new", **_owner(99))  # new writes use the new key
        return {r["owner_id"]: r for r in await rows(app)}

    before = in_app(v2, after_rotation)
    assert before["con_099"]["kek_id"] == "k2"
    assert {before[f"con_{i:03d}"]["kek_id"] for i in range(5)} == {"k1"}

    status = _status(v2)
    assert status[("local", "k1")] == {
        "provider": "local",
        "kek_id": "k1",
        "rows": 5,
        "active": False,
        "configured": True,
    }
    assert status[("local", "k2")]["rows"] == 1 and status[("local", "k2")]["active"]

    result = keys_cli(v2, "rewrap", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "rewrap: 0/5 done" in result.stdout
    assert "rewrap: 2/5 done" in result.stdout
    assert "rewrap: 5/5 done (rewrapped 5" in result.stdout
    assert "done: 5 secret(s) re-wrapped" in result.stdout

    async def read_rows(app):
        return {r["owner_id"]: r for r in await rows(app)}

    after = in_app(v2, read_rows)
    for oid, row in after.items():
        assert row["kek_id"] == "k2"
        assert bytes(row["ciphertext"]) == bytes(before[oid]["ciphertext"])  # data untouched
        assert bytes(row["nonce"]) == bytes(before[oid]["nonce"])
        if before[oid]["kek_id"] == "k1":
            assert bytes(row["wrapped_dek"]) != bytes(before[oid]["wrapped_dek"])

    status = _status(v2)
    assert status[("local", "k1")]["rows"] == 0
    text = keys_cli(v2, "status").stdout
    assert "every secret is under the active key" in text

    # k1 can go now: everything decrypts with k2 alone.
    async def read_all(app):
        return [(await get(app, **_owner(i))).reveal() for i in [*range(5), 99]]

    assert in_app(only_k2, read_all) == [*(f"token-{i}" for i in range(5)), "token-new"]

    # Idempotent: a second run has nothing to do.
    again = keys_cli(v2, "rewrap")
    assert again.exit_code == 0 and "done: 0 secret(s) re-wrapped" in again.stdout


def test_removing_the_old_key_too_early_breaks_only_unmigrated_rows(settings_factory):
    v1 = settings_factory(encryption_keys=keyring_json("k1", "k1"))
    v2 = settings_factory(encryption_keys=keyring_json("k2", "k1", "k2"))
    only_k2 = settings_factory(encryption_keys=keyring_json("k2", "k2"))

    async def write(app):
        for i in range(3):
            await put(app, f"token-{i}", **_owner(i))

    in_app(v1, write)

    async def migrate_one(app):  # the provider rotated one refresh token: re-put under k2
        await put(app, "token-0b", **_owner(0))

    in_app(v2, migrate_one)

    async def read(app):
        assert (await get(app, **_owner(0))).reveal() == "token-0b"
        for i in (1, 2):
            with pytest.raises(UnknownKeyId) as err:
                await get(app, **_owner(i))
            assert err.value.kek_id == "k1"
            assert "'k1'" in str(err.value) and "token" not in str(err.value)
        assert app.state.readiness_checks  # the service itself still starts and is ready
        return await app.state.readiness_checks["keys"]()

    assert in_app(only_k2, read) == (True, "")

    status = keys_cli(only_k2, "status")
    assert status.exit_code == 0
    assert "2 secret(s) under key 'k1' (local) which is not configured" in status.stderr

    failed = keys_cli(only_k2, "rewrap")
    assert failed.exit_code == 1
    assert "under 'k1' (local)" in failed.stderr and "not configured" in failed.stderr
    assert "2 secret(s) could not be re-wrapped" in failed.stderr

    # Put k1 back: the rows were never damaged and rewrap completes.
    fixed = keys_cli(v2, "rewrap")
    assert fixed.exit_code == 0 and "done: 2 secret(s) re-wrapped" in fixed.stdout
    assert in_app(only_k2, lambda app: get(app, **_owner(2))).reveal() == "token-2"


def test_keys_generate_prints_a_usable_entry(settings_factory):
    result = runner.invoke(cli, ["keys", "generate", "--kid", "k2027"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(entry) == ["k2027"]
    LocalKeyring({"k2027": base64.b64decode(entry["k2027"])}, "k2027")
    ((other_kid, other_key),) = json.loads(
        runner.invoke(cli, ["keys", "generate"]).stdout.strip()
    ).items()
    assert other_kid != "k2027" and other_key != entry["k2027"]
    assert runner.invoke(cli, ["keys", "generate", "--kid", "bad kid!"]).exit_code == 2


async def test_rewrap_does_not_clobber_a_concurrent_write(keyring_settings, running_app):
    """An old replica (still writing under k1) replaces a secret while rewrap runs: the
    compare-and-swap leaves the new secret alone instead of pairing it with the old key."""
    async with running_app(keyring_settings("k1", "k1")) as old_app:
        for i in range(3):
            await put(old_app, f"token-{i}", **_owner(i))
        async with running_app(keyring_settings("k2", "k1", "k2")) as app:
            vault: Vault = app.state.vault
            real_wrap = vault.provider.wrap
            raced = False

            async def racing_wrap(dek, ctx):
                nonlocal raced
                if not raced and ctx["owner_id"] == "con_001":
                    raced = True
                    await put(old_app, "token-1-replaced", **_owner(1))
                return await real_wrap(dek, ctx)

            vault.provider.wrap = racing_wrap  # type: ignore[method-assign]
            report = await rewrap(app.state.sessionmaker, vault, batch_size=10)
            vault.provider.wrap = real_wrap  # type: ignore[method-assign]
            assert raced
            assert (report.rewrapped, report.skipped, report.failures) == (2, 1, [])
            assert (await get(app, **_owner(1))).reveal() == "token-1-replaced"
            report = await rewrap(app.state.sessionmaker, vault)  # the rerun finishes it
            assert report.rewrapped == 1
            assert {r["kek_id"] for r in await rows(app)} == {"k2"}
            assert [(await get(app, **_owner(i))).reveal() for i in range(3)] == [
                "token-0",
                "token-1-replaced",
                "token-2",
            ]


async def test_service_keeps_serving_during_rewrap(keyring_settings, running_app):
    async with running_app(keyring_settings("k1", "k1")) as app:
        for i in range(24):
            await put(app, f"token-{i}", **_owner(i))
    async with running_app(keyring_settings("k2", "k1", "k2")) as app:
        stop = asyncio.Event()
        reads = 0

        async def reader() -> None:
            nonlocal reads
            while not stop.is_set():
                for i in range(0, 24, 5):
                    assert (await get(app, **_owner(i))).reveal() == f"token-{i}"
                    reads += 1
                await asyncio.sleep(0)

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                await put(app, f"fresh-{n}", **owner("eu_w", "connection", "con_w", "x"))
                n += 1
                await asyncio.sleep(0)

        async def rotate() -> Any:
            try:
                return await rewrap(app.state.sessionmaker, app.state.vault, batch_size=3)
            finally:
                stop.set()

        report, *_ = await asyncio.gather(rotate(), reader(), writer())
        assert report.rewrapped == 24 and not report.failures
        assert reads > 0
        async with app.state.sessionmaker() as session:
            counts = {c.kek_id: c.rows for c in await key_counts(session, app.state.vault)}
        assert counts == {"k1": 0, "k2": 25}
