"""Where keys come from: PBF_ENCRYPTION_KEYS, a key file, the sandbox keyring (0600,
reused), and production refusing to start without keys. Errors never echo key material."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings, production_problems
from app.main import ConfigurationError, create_app
from app.vault import KeyringError, LocalKeyring
from app.vault.key_providers import parse_keyring
from app.vault.startup import build_vault, sandbox_keyring_path
from tests.fixtures.vault import PLAINTEXTS, get, keyring_json, owner, put

A = owner("eu_1", "connection", "con_1", "refresh_token")


async def test_sandbox_keyring_is_generated_0600_and_reused(settings, running_app):
    path = sandbox_keyring_path(settings)
    assert not path.exists()
    async with running_app(settings) as app:
        assert path.exists()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert app.state.vault.provider.active_key_id == doc["active"]
        assert len(base64.b64decode(doc["keys"][doc["active"]])) == 32
        await put(app, PLAINTEXTS["refresh_token"], **A)
    before = path.read_bytes()
    async with running_app(settings) as app:  # next start: same file, same key
        assert path.read_bytes() == before
        assert (await get(app, **A)).reveal() == PLAINTEXTS["refresh_token"]


@pytest.mark.db_independent
def test_pbf_encryption_keys_env_var_reaches_the_vault(monkeypatch, tmp_path):
    monkeypatch.setenv("PBF_ENCRYPTION_KEYS", keyring_json("env-k", "env-k", "old-k"))
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    settings = Settings()
    assert settings.vault.encryption_keys is not None
    import asyncio

    vault = asyncio.run(build_vault(settings))
    assert vault.provider.key_ids() == ["env-k", "old-k"]
    assert not sandbox_keyring_path(settings).exists()  # configured keys: nothing generated
    # The nested name works too, and disagreeing values are refused.
    monkeypatch.delenv("PBF_ENCRYPTION_KEYS")
    monkeypatch.setenv("PBF_VAULT__ENCRYPTION_KEYS", keyring_json("nested", "nested"))
    assert asyncio.run(build_vault(Settings())).provider.active_key_id == "nested"
    monkeypatch.setenv("PBF_ENCRYPTION_KEYS", keyring_json("other", "other"))
    with pytest.raises(ValueError, match="set only one"):
        Settings()


async def test_key_file(settings_factory, tmp_path, running_app):
    key_file = tmp_path / "keys.json"
    key_file.write_text(keyring_json("file-k", "file-k"))
    key_file.chmod(0o600)
    async with running_app(settings_factory(vault={"key_file": key_file})) as app:
        assert app.state.vault.provider.active_key_id == "file-k"
        await put(app, "x", **A)


def _production(**overrides) -> Settings:
    values = {
        "mode": "production",
        "database_url": "postgresql://db.internal/pbf",
        "public_base_url": "https://connect.example.com",
        "fivetran": {"api_key": "k", "api_secret": "s", "webhook_secret": "w"},
    }
    values.update(overrides)
    return Settings(**values)


@pytest.mark.db_independent
def test_production_without_keys_refuses_to_start(tmp_path):
    settings = _production(data_dir=tmp_path)
    problems = production_problems(settings)
    assert any("No encryption keys" in p for p in problems), problems
    with pytest.raises(ConfigurationError, match="No encryption keys"):
        create_app(settings)
    assert not sandbox_keyring_path(settings).exists()  # never falls back to generating one
    result = CliRunner().invoke(
        cli,
        ["serve"],
        env={
            "PBF_MODE": "production",
            "PBF_DATA_DIR": str(tmp_path),
            "DATABASE_URL": "postgresql://db.internal/pbf",
            "PBF_PUBLIC_BASE_URL": "https://connect.example.com",
            "PBF_FIVETRAN__API_KEY": "k",
            "PBF_FIVETRAN__API_SECRET": "s",
            "PBF_FIVETRAN__WEBHOOK_SECRET": "w",
        },
    )
    assert result.exit_code == 2
    assert "No encryption keys" in result.output
    # Even if asked directly, the vault does not invent production keys.
    import asyncio

    with pytest.raises(KeyringError, match="no encryption keys"):
        asyncio.run(build_vault(settings))


@pytest.mark.db_independent
def test_production_key_configuration_problems(tmp_path):
    ok = _production(encryption_keys=keyring_json("k1"))
    assert not [p for p in production_problems(ok) if "key" in p.lower()]
    both = _production(encryption_keys=keyring_json("k1"), vault={"key_file": tmp_path / "k"})
    assert any("only one" in p for p in production_problems(both))
    missing = _production(vault={"key_file": tmp_path / "absent.json"})
    assert any("does not exist" in p for p in production_problems(missing))
    kms = _production(vault={"provider": "awskms"})
    assert any("AWS_KMS_KEY_ID" in p for p in production_problems(kms))


MATERIAL = base64.b64encode(b"\x07" * 32).decode()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not json " + MATERIAL, "not valid JSON"),
        (json.dumps({"keys": {"k1": MATERIAL}}), '"active" must name'),
        (json.dumps({"active": "k2", "keys": {"k1": MATERIAL}}), "active key id 'k2'"),
        (json.dumps({"active": "k1", "keys": {"k1": MATERIAL[:-8]}}), "must decode to 32"),
        (json.dumps({"active": "k1", "keys": {"k1": MATERIAL + "!!"}}), "not valid base64"),
        (json.dumps({"active": "k 1", "keys": {"k 1": MATERIAL}}), "invalid key id"),
        (json.dumps({"active": "k1", "keys": {}}), "no keys"),
    ],
)
@pytest.mark.db_independent
def test_bad_keyrings_are_refused_without_echoing_material(doc, message):
    with pytest.raises(KeyringError) as err:
        parse_keyring(doc, source="PBF_ENCRYPTION_KEYS")
    assert message in str(err.value)
    assert MATERIAL[:16] not in str(err.value)
    assert MATERIAL[:16] not in repr(err.value)


@pytest.mark.db_independent
def test_keyring_accepts_urlsafe_base64_and_never_prints_keys():
    raw = bytes(range(32))
    ring = parse_keyring(
        json.dumps({"active": "a", "keys": {"a": base64.urlsafe_b64encode(raw).decode()}}),
        source="t",
    )
    assert ring.key_ids() == ["a"]
    assert base64.b64encode(raw).decode()[:10] not in repr(ring)
    with pytest.raises(KeyringError):
        LocalKeyring({"a": b"short"}, "a")


def test_keys_rotate_updates_a_key_file(tmp_path, database_url):
    key_file = tmp_path / "keys.json"
    key_file.write_text(keyring_json("k1", "k1"))
    env = {"PBF_VAULT__KEY_FILE": str(key_file), "PBF_DATABASE_URL": database_url}
    result = CliRunner().invoke(cli, ["keys", "rotate", "--kid", "k2"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(key_file.read_text())
    assert doc["active"] == "k2" and set(doc["keys"]) == {"k1", "k2"}
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert doc["keys"]["k2"] not in result.output
    assert CliRunner().invoke(cli, ["keys", "rotate", "--kid", "k2"], env=env).exit_code == 2
    status = CliRunner().invoke(cli, ["keys", "status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    keys = json.loads(status.stdout)["keys"]
    assert [(k["kek_id"], k["active"], k["rows"]) for k in keys] == [
        ("k2", True, 0),
        ("k1", False, 0),
    ]


def test_key_file_lifecycle_add_activate_rewrap_remove(tmp_path, settings_factory):
    """Multi-replica rotation on a key file: add (inactive), activate, rewrap, remove — and
    removal is refused while the key is active or still used by a secret."""
    import asyncio

    from app.main import create_app
    from tests.fixtures.vault import get, put

    key_file = tmp_path / "keys.json"
    key_file.write_text(keyring_json("k1", "k1"))
    key_file.chmod(0o600)
    settings = settings_factory(vault={"key_file": key_file})
    env = {
        "PBF_VAULT__KEY_FILE": str(key_file),
        "PBF_DATABASE_URL": settings.effective_database_url,
        "PBF_DATA_DIR": str(settings.data_dir),
    }

    def keys(*args):
        return CliRunner().invoke(cli, ["keys", *args], env=env)

    def in_app(fn):
        async def go():
            app = create_app(settings_factory(vault={"key_file": key_file}))
            async with app.router.lifespan_context(app):
                return await fn(app)

        return asyncio.run(go())

    in_app(lambda app: put(app, "tok", **A))
    r = keys("rotate", "--kid", "k2", "--no-activate")
    assert r.exit_code == 0 and "active is still k1" in r.stdout
    assert json.loads(key_file.read_text())["active"] == "k1"
    assert keys("activate", "k3").exit_code == 2
    r = keys("activate", "k2")
    assert r.exit_code == 0 and json.loads(key_file.read_text())["active"] == "k2"
    r = keys("remove", "k2")
    assert r.exit_code == 2 and "active key" in r.stderr
    r = keys("remove", "k1")
    assert r.exit_code == 2 and "1 secret(s) still use key 'k1'" in r.stderr
    assert set(json.loads(key_file.read_text())["keys"]) == {"k1", "k2"}
    assert keys("rewrap").exit_code == 0
    r = keys("remove", "k1")
    assert r.exit_code == 0, r.output
    doc = json.loads(key_file.read_text())
    assert doc == {"active": "k2", "keys": {"k2": doc["keys"]["k2"]}}
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert in_app(lambda app: get(app, **A)).reveal() == "tok"
