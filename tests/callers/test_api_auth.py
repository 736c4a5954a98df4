"""Caller authentication and authorization on /v1 routes."""

from __future__ import annotations

import pytest


async def test_missing_header_is_401_with_challenge(client):
    r = await client.get("/v1/me")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "missing_credentials"


@pytest.mark.parametrize(
    "header",
    [
        "Basic abc",
        "Bearer",
        "Bearer nonsense",
        "Bearer pbf_AAAAAAAAAAAA_" + "x" * 43,
        "token",
    ],
)
async def test_malformed_or_unknown_key_is_401(client, header, make_api_key):
    await make_api_key()
    r = await client.get("/v1/me", headers={"Authorization": header})
    assert r.status_code == 401
    assert "www-authenticate" in r.headers
    assert r.json()["code"] == "invalid_credentials"


async def test_wrong_secret_for_existing_key_id_is_401(client, make_api_key):
    key = await make_api_key()
    prefix, key_id, secret = key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


async def test_valid_key_and_revocation(client, make_api_key, app):
    from app.callers.service import revoke_api_key

    key = await make_api_key(["read"], name="frontend")
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert r.json()["name"] == "frontend"
    assert r.json()["scopes"] == ["read"]
    async with app.state.sessionmaker() as s, s.begin():
        await revoke_api_key(s, key.split("_")[1])
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401
    assert r.json()["code"] == "revoked_credentials"


async def test_key_is_stored_only_as_hash(app, make_api_key):
    from sqlalchemy import text

    key = await make_api_key()
    secret = key.split("_", 2)[2]
    async with app.state.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM api_keys"))).all()
    assert secret not in repr(rows)


@pytest.mark.db_independent
async def test_insufficient_scope_is_403():
    from app.callers.service import Caller, check_scope
    from app.errors import Forbidden

    caller = Caller(key_id="k", name="n", scopes=frozenset({"read"}))
    with pytest.raises(Forbidden) as exc:
        check_scope(caller, "write")
    assert exc.value.status == 403
    assert exc.value.code == "insufficient_scope"
    check_scope(Caller(key_id="k", name="n", scopes=frozenset({"admin"})), "write")
