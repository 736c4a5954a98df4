"""AWS KMS provider against moto: round trip through the app, tamper/swap attacks, rotation
to a new KMS key with the real ``keys rewrap`` CLI, and moving from the local keyring to KMS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

from app.cli import cli  # noqa: E402
from app.config import Settings  # noqa: E402
from app.main import create_app  # noqa: E402
from app.vault import DecryptionFailed, UnknownKeyId  # noqa: E402
from tests.fixtures.vault import (  # noqa: E402
    get,
    keyring_json,
    owner,
    put,
    row_of,
    rows,
    set_columns,
)

REGION = "us-east-1"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
A = owner("eu_a", "connection", "con_a", "refresh_token")
B = owner("eu_b", "connection", "con_b", "refresh_token")


@pytest.fixture
def kms(monkeypatch) -> Iterator[Any]:
    """A moto KMS (in-process fake of the AWS API) with credentials that go nowhere."""
    import boto3

    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    with moto.mock_aws():
        yield boto3.client("kms", region_name=REGION)


def new_key(kms, alias: str | None = None) -> str:
    arn = kms.create_key(Description="pbf test")["KeyMetadata"]["Arn"]
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


def kms_settings(settings_factory, key_id: str, **overrides: Any) -> Settings:
    vault = {"provider": "awskms", "aws_kms_key_id": key_id, "aws_region": REGION}
    return settings_factory(vault=vault, **overrides)


def in_app(settings: Settings, fn) -> Any:
    async def go() -> Any:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            return await fn(app)

    return asyncio.run(go())


def test_round_trip_and_attacks(kms, settings_factory):
    arn = new_key(kms, "alias/pbf-vault")
    settings = kms_settings(settings_factory, "alias/pbf-vault")

    async def scenario(app):
        assert app.state.vault.provider.active_key_id == arn  # alias resolved to the key ARN
        assert await app.state.readiness_checks["keys"]() == (True, "")
        await put(app, "rt-kms-secret", **A)
        await put(app, "rt-bob", **B)
        assert (await get(app, **A)).reveal() == "rt-kms-secret"
        a = await row_of(app, "connection", "con_a", "refresh_token")
        assert (a["kek_provider"], a["kek_id"]) == ("awskms", arn)
        b = await row_of(app, "connection", "con_b", "refresh_token")
        # swap: Alice's record copied into Bob's row -> KMS refuses the EncryptionContext
        cols = ("alg", "kek_provider", "kek_id", "wrapped_dek", "nonce", "ciphertext")
        await set_columns(app, b["id"], **{c: a[c] for c in cols})
        with pytest.raises(DecryptionFailed):
            await get(app, **B)
        # one flipped bit in the KMS blob
        blob = bytearray(a["wrapped_dek"])
        blob[-1] ^= 1
        await set_columns(app, a["id"], wrapped_dek=bytes(blob))
        with pytest.raises(DecryptionFailed) as err:
            await get(app, **A)
        assert "rt-kms-secret" not in str(err.value)
        # relabelled to another KMS key
        other = new_key(kms)
        await set_columns(app, a["id"], wrapped_dek=a["wrapped_dek"], kek_id=other)
        with pytest.raises(UnknownKeyId, match="not usable"):
            await get(app, **A)

    in_app(settings, scenario)


def test_unusable_kms_key_refuses_to_start(kms, settings_factory):
    settings = kms_settings(settings_factory, "alias/does-not-exist")
    from app.vault.errors import KeyProviderUnavailable

    with pytest.raises(KeyProviderUnavailable, match="alias/does-not-exist"):
        in_app(settings, lambda app: asyncio.sleep(0))


def _cli(settings: Settings, *args: str, keys: str | None = None) -> Any:
    env = {
        **AWS_ENV,
        "PBF_MODE": "sandbox",
        "PBF_DATA_DIR": str(settings.data_dir),
        "PBF_DATABASE_URL": settings.effective_database_url,
        "PBF_VAULT__PROVIDER": "awskms",
        "PBF_VAULT__AWS_KMS_KEY_ID": settings.vault.aws_kms_key_id or "",
        "PBF_VAULT__AWS_REGION": REGION,
    }
    if keys:
        env["PBF_ENCRYPTION_KEYS"] = keys
    return CliRunner().invoke(cli, ["keys", *args], env=env)


def test_rotation_to_a_new_kms_key_with_the_cli(kms, settings_factory):
    old = new_key(kms)
    new = new_key(kms)
    s_old = kms_settings(settings_factory, old)
    s_new = kms_settings(settings_factory, new)

    async def write(app):
        for i in range(4):
            await put(app, f"tok-{i}", **owner("eu", "connection", f"con_{i}", "refresh_token"))

    in_app(s_old, write)

    async def rotated(app):
        for i in range(4):  # old rows decrypt under the old KMS key
            got = await get(app, **owner("eu", "connection", f"con_{i}", "refresh_token"))
            assert got.reveal() == f"tok-{i}"
        await put(app, "tok-new", **owner("eu", "connection", "con_new", "refresh_token"))
        return {r["owner_id"]: r for r in await rows(app)}

    before = in_app(s_new, rotated)
    assert before["con_new"]["kek_id"] == new
    status = json.loads(_cli(s_new, "status", "--json").stdout)
    counts = {k["kek_id"]: (k["rows"], k["active"]) for k in status["keys"]}
    assert counts == {new: (1, True), old: (4, False)}

    result = _cli(s_new, "rewrap", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "rewrap: 4/4 done (rewrapped 4" in result.stdout

    after = in_app(s_new, lambda app: rows(app))
    for r in after:
        assert r["kek_id"] == new
        assert bytes(r["ciphertext"]) == bytes(before[r["owner_id"]]["ciphertext"])

    # The old KMS key is no longer needed: reads never ask KMS for it.
    async def read_all(app):
        client = app.state.vault.provider._client
        real_decrypt = client.decrypt

        def decrypt(**kw):
            assert kw["KeyId"] == new, "the old key was used"
            return real_decrypt(**kw)

        client.decrypt = decrypt
        return [
            (await get(app, **owner("eu", "connection", f"con_{i}", "refresh_token"))).reveal()
            for i in range(4)
        ]

    assert in_app(s_new, read_all) == [f"tok-{i}" for i in range(4)]


def test_move_from_local_keyring_to_kms(kms, settings_factory):
    local_keys = keyring_json("k-local", "k-local")
    arn = new_key(kms)
    s_local = settings_factory(encryption_keys=local_keys)
    s_kms = kms_settings(settings_factory, arn, encryption_keys=local_keys)

    in_app(s_local, lambda app: put(app, "from-local", **A))

    async def check(app):
        assert (await get(app, **A)).reveal() == "from-local"  # read via the local keyring
        return (await row_of(app, "connection", "con_a", "refresh_token"))["kek_provider"]

    assert in_app(s_kms, check) == "local"
    result = _cli(s_kms, "rewrap", keys=local_keys)
    assert result.exit_code == 0, result.output
    assert "done: 1 secret(s) re-wrapped" in result.stdout
    s_kms_only = kms_settings(settings_factory, arn)
    assert in_app(s_kms_only, check) == "awskms"


def test_rewrap_between_kms_keys_is_server_side(kms, settings_factory):
    """Rotation between KMS keys uses ReEncrypt: no Decrypt call, no data key in our memory."""
    from app.vault.rotation import rewrap

    old, new = new_key(kms), new_key(kms)
    in_app(kms_settings(settings_factory, old), lambda app: put(app, "tok", **A))

    async def rotate(app):
        client = app.state.vault.provider._client

        def no_decrypt(**kw):
            raise AssertionError("Decrypt called during a KMS-to-KMS rewrap")

        real_decrypt, client.decrypt = client.decrypt, no_decrypt
        report = await rewrap(app.state.sessionmaker, app.state.vault)
        client.decrypt = real_decrypt
        assert (report.rewrapped, report.failures) == (1, [])
        row = await row_of(app, "connection", "con_a", "refresh_token")
        assert row["kek_id"] == new
        return (await get(app, **A)).reveal()

    assert in_app(kms_settings(settings_factory, new), rotate) == "tok"
