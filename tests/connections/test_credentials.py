"""Credentials sources end to end over HTTP (stripe API key, postgres through an SSH tunnel)
across the three group strategies, against the Fivetran simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.fixtures.onboarding import Simulator, problem, vault_rows

PG_CONFIG = {
    "host": "db.internal",
    "port": 5432,
    "database": "shop",
    "user": "fivetran",
    "connection_type": "SshTunnel",
    "tunnel_host": "bastion.example.com",
    "tunnel_port": 22,
    "tunnel_user": "fivetran",
    "update_method": "QUERY_BASED",
}


@pytest.fixture(params=["per_end_user", "shared", "per_service"])
async def strategy_app(
    request: pytest.FixtureRequest, settings_factory: Callable[..., Settings]
) -> AsyncIterator[tuple[str, FastAPI, httpx.AsyncClient]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    settings = settings_factory(onboarding={"group_strategy": request.param})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
        ) as c:
            yield request.param, application, c


async def test_stripe_and_postgres_ssh_across_strategies(
    strategy_app: tuple[str, FastAPI, httpx.AsyncClient],
) -> None:
    strategy, app, api = strategy_app
    sim = Simulator(api)
    for eu in ("shop-a", "shop_a"):  # slugs that would collide without the hash suffix
        r = await api.put(f"/v1/end-users/{eu}", json={"name": eu})
        assert r.status_code == 201, r.text
        assert r.json()["group_strategy"] == strategy

    r = await api.post(
        "/v1/connections",
        json={"end_user": "shop-a", "service": "stripe", "credentials": {"api_key": "sk_live_1"}},
    )
    assert r.status_code == 201, r.text
    a = r.json()
    assert a["state"] == "connected", a
    assert a["credentials_set"] == ["api_key"]
    assert "sk_live_1" not in r.text
    r = await api.post(
        "/v1/connections",
        json={"end_user": "shop_a", "service": "stripe", "config": {"api_key": "sk_live_2"}},
    )
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["state"] == "connected"
    assert "sk_live_2" not in r.text
    if strategy == "per_end_user":
        assert a["group_id"] != b["group_id"]
        assert a["schema"] == b["schema"] == "stripe"
    else:
        assert a["group_id"] == b["group_id"]
        assert a["schema"] != b["schema"]
    # Fivetran has exactly the connection we recorded, un-paused after the tests passed.
    r = await sim.get(f"/v1/connections/{a['fivetran_connection_id']}")
    assert r.status_code == 200, r.text
    remote = r.json()["data"]
    assert remote["paused"] is False and remote["schema"] == a["schema"]
    assert remote["config"]["api_key"] == "******"

    # Postgres through an SSH tunnel: the group's public key, then fingerprint approval.
    r = await api.get("/v1/end-users/shop-a/ssh-public-key", params={"service": "postgres"})
    assert r.status_code == 200, r.text
    assert r.json()["public_key"].startswith("ssh-")
    r = await api.post(
        "/v1/connections",
        json={
            "end_user": "shop-a",
            "service": "postgres",
            "config": PG_CONFIG,
            "credentials": {"password": "pg-secret"},
        },
    )
    assert r.status_code == 201, r.text
    pg = r.json()
    assert pg["state"] == "setup_failed", pg
    ssh = next(t for t in pg["setup_tests"] if t["title"] == "SSH Tunnel")
    assert ssh["status"] == "FAILED" and ssh["details"]["hash"]
    r = await api.post(f"/v1/connections/{pg['id']}/approve-fingerprint", json={})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connected", r.json()
    assert "pg-secret" not in r.text

    # Listing is served from our state and paginates.
    r = await api.get("/v1/connections", params={"end_user": "shop-a", "limit": 1})
    assert r.status_code == 200
    page = r.json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    r = await api.get(
        "/v1/connections", params={"end_user": "shop-a", "limit": 1, "cursor": page["next_cursor"]}
    )
    assert len(r.json()["items"]) == 1 and r.json()["next_cursor"] is None

    # Offboarding leaves no secret rows and no Fivetran connection.
    eu_id = await _end_user_id(app, "shop-a")
    assert await vault_rows(app, eu_id) == 2
    r = await api.delete("/v1/end-users/shop-a")
    assert r.status_code == 204, r.text
    assert await vault_rows(app, eu_id) == 0
    for conn in (a, pg):
        r = await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}")
        assert r.status_code == 404
    r = await api.get(f"/v1/connections/{a['id']}")
    problem(r, 404, "connection_not_found")
    r = await api.get("/v1/end-users/shop-a")
    problem(r, 404, "end_user_not_found")
    if strategy == "per_end_user":
        r = await sim.get(f"/v1/groups/{a['group_id']}")
        assert r.status_code == 404
    # The other end-user is untouched.
    r = await api.get(f"/v1/connections/{b['id']}")
    assert r.status_code == 200 and r.json()["state"] == "connected"


async def _end_user_id(app: FastAPI, external_id: str) -> str:
    from sqlalchemy import select

    from app.end_users.models import EndUser

    async with app.state.sessionmaker() as s:
        value = await s.scalar(select(EndUser.id).where(EndUser.external_id == external_id))
    assert value is not None
    return str(value)


async def test_payload_preview_masks_secrets_and_writes_nothing(
    api: httpx.AsyncClient, count_rows: Callable[..., Any]
) -> None:
    await api.put("/v1/end-users/acme", json={})
    before = await count_rows("connections")
    r = await api.post(
        "/v1/payloads/preview",
        json={"end_user": "acme", "service": "stripe", "config": {"api_key": "sk_x"}},
    )
    assert r.status_code == 200, r.text
    body = r.json()["body"]
    assert body["config"]["api_key"] == "******"
    assert body["config"]["schema"] == "stripe"
    assert body["paused"] is True and body["run_setup_tests"] is True
    assert "sk_x" not in r.text
    assert await count_rows("connections") == before
