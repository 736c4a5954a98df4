"""Lifecycle of a connection after creation: pause/resume, schedule, sync, resync, tests,
schema policy, state history and events, token retention, resumable offboarding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.onboarding.conftest import Simulator, oauth_connect, problem, vault_rows

STRIPE = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_l"}}
POLICY = {
    "schema_change_handling": "BLOCK_ALL",
    "blocked_tables": ["*.tickets"],
    "hashed_columns": ["stripe.opportunities.email"],
}


@pytest.fixture
def make_api(make_app_client: Callable[..., Any]) -> Callable[..., Any]:
    async def make(**overrides: Any) -> tuple[FastAPI, httpx.AsyncClient]:
        application, client = await make_app_client(**overrides)
        assert (await client.put("/v1/end-users/acme", json={})).status_code == 201
        return application, client

    return make


async def _events(app: FastAPI, connection_id: str) -> list[str]:
    from app.events.models import Event

    async with app.state.sessionmaker() as s:
        return list(
            (
                await s.scalars(
                    select(Event.kind)
                    .where(Event.connection_id == connection_id)
                    .order_by(Event.created_at, Event.id)
                )
            ).all()
        )


async def test_pause_resume_schedule_sync_resync_test(make_api: Callable[..., Any]) -> None:
    app, api = await make_api()
    sim = Simulator(api)
    conn = (await api.post("/v1/connections", json=STRIPE)).json()
    cid, fid = conn["id"], conn["fivetran_connection_id"]
    assert await _events(app, cid) == ["connection.created", "connection.connected"]

    r = await api.patch(f"/v1/connections/{cid}", json={"paused": True})
    assert r.status_code == 200 and r.json()["state"] == "paused", r.text
    assert (await sim.get(f"/v1/connections/{fid}")).json()["data"]["paused"] is True
    r = await api.patch(
        f"/v1/connections/{cid}",
        json={"paused": False, "sync_frequency": 1440, "daily_sync_time": "03:00"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connected" and r.json()["sync_frequency"] == 1440
    remote = (await sim.get(f"/v1/connections/{fid}")).json()["data"]
    assert remote["paused"] is False and remote["daily_sync_time"] == "03:00"
    assert (await _events(app, cid))[-2:] == ["connection.paused", "connection.resumed"]

    problem(
        await api.patch(f"/v1/connections/{cid}", json={"sync_frequency": 7}),
        422,
        "invalid_sync_frequency",
    )
    problem(await api.patch(f"/v1/connections/{cid}", json={"daily_sync_time": "3am"}), 422)
    problem(await api.patch(f"/v1/connections/{cid}", json={"config": {"schema": "x"}}), 422)
    problem(await api.patch(f"/v1/connections/{cid}", json={"auth": {}}), 422)
    problem(await api.patch(f"/v1/connections/{cid}", json={}), 422, "empty_update")

    # A non-secret field alone (the stored API key still counts as given).
    r = await api.patch(
        f"/v1/connections/{cid}", json={"config": {"historical_sync_time_frame": "ALL_TIME"}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["config"]["historical_sync_time_frame"] == "ALL_TIME"
    # Rotating a secret goes to Fivetran and the vault, never back to the caller.
    r = await api.patch(f"/v1/connections/{cid}", json={"config": {"api_key": "sk_new"}})
    assert r.status_code == 200 and "sk_new" not in r.text

    before = len(await sim.requests())
    r = await api.post(f"/v1/connections/{cid}/sync", json={"force": True})
    assert r.status_code == 202 and r.json()["status"] == "sync_triggered"
    # Fivetran refuses a resync while the sync runs: a conflict, not a gateway error.
    scope = {"scope": {"stripe": ["tickets"]}}
    problem(await api.post(f"/v1/connections/{cid}/resync", json=scope), 409, "fivetran_conflict")
    r = await api.post(
        f"/sandbox/fivetran/_control/connections/{fid}/sync-result", json={"status": "SUCCESSFUL"}
    )
    assert r.status_code < 300, r.text
    r = await api.post(f"/v1/connections/{cid}/resync", json=scope)
    assert r.status_code == 202, r.text
    problem(await api.post(f"/v1/connections/{cid}/resync", json={"scope": {"stripe": []}}), 422)
    r = await api.post(f"/v1/connections/{cid}/test", json={})
    assert r.status_code == 200 and r.json()["state"] == "connected"
    paths = [e["path"] for e in (await sim.requests())[before:]]
    assert any(p.endswith("/sync") for p in paths) and any(p.endswith("/resync") for p in paths)

    # Reads come from our own state: no Fivetran request per GET.
    before = len(await sim.requests())
    for _ in range(3):
        assert (await api.get(f"/v1/connections/{cid}")).status_code == 200
    assert len(await sim.requests()) == before
    assert (await api.get(f"/v1/connections/{cid}", params={"refresh": "true"})).status_code == 200
    assert len(await sim.requests()) == before + 1

    r = await api.delete(f"/v1/connections/{cid}")
    assert r.status_code == 204
    assert (await sim.get(f"/v1/connections/{fid}")).status_code == 404
    assert (await _events(app, cid))[-1] == "connection.deleted"
    async with app.state.sessionmaker() as s:
        from app.vault.models import VaultSecret

        left = await s.scalars(select(VaultSecret.id).where(VaultSecret.owner_id == cid))
        assert list(left) == []
    problem(await api.get(f"/v1/connections/{cid}"), 404, "connection_not_found")


async def test_schema_policy_applied_and_enforced(make_api: Callable[..., Any]) -> None:
    _, api = await make_api(onboarding={"schema_policy": POLICY})
    conn = (await api.post("/v1/connections", json=STRIPE)).json()
    assert conn["state"] == "connected", conn
    cid = conn["id"]
    r = await api.get(f"/v1/connections/{cid}/schema")
    assert r.status_code == 200, r.text
    schema = r.json()
    assert schema["schema_change_handling"] == "BLOCK_ALL"
    tables = schema["schemas"]["stripe"]["tables"]
    assert tables["tickets"]["enabled"] is False
    assert tables["opportunities"]["columns"]["email"]["hashed"] is True
    assert schema["policy"]["blocked_tables"] == ["*.tickets"]

    r = await api.patch(
        f"/v1/connections/{cid}/schema",
        json={
            "schema_change_handling": "ALLOW_ALL",
            "schemas": {
                "stripe": {
                    "tables": {
                        "tickets": {"enabled": True},
                        "ad_groups": {"enabled": False},
                        "opportunities": {"columns": {"email": {"hashed": False}}},
                    }
                }
            },
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    refused = {item["path"] for item in out["refused"]}
    assert refused == {
        "schema_change_handling",
        "stripe.tickets",
        "stripe.opportunities.email",
    }, out["refused"]
    tables = out["schemas"]["stripe"]["tables"]
    assert tables["ad_groups"]["enabled"] is False  # permitted: applied
    assert tables["tickets"]["enabled"] is False
    assert tables["opportunities"]["columns"]["email"]["hashed"] is True
    assert out["schema_change_handling"] == "BLOCK_ALL"
    problem(
        await api.patch(
            f"/v1/connections/{cid}/schema", json={"schema_change_handling": "SOMETIMES"}
        ),
        422,
    )


async def test_unpause_after_setup_can_be_disabled(make_api: Callable[..., Any]) -> None:
    _, api = await make_api(onboarding={"unpause_after_setup": False})
    conn = (await api.post("/v1/connections", json=STRIPE)).json()
    assert conn["state"] == "connected" and conn["paused"] is True
    remote = await Simulator(api).get(f"/v1/connections/{conn['fivetran_connection_id']}")
    assert remote.json()["data"]["paused"] is True


async def test_setup_failure_then_fix(make_api: Callable[..., Any]) -> None:
    app, api = await make_api()
    body = {**STRIPE, "credentials": {"api_key": "invalid"}}  # the simulator's bad value
    r = await api.post("/v1/connections", json=body)
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "setup_failed"
    assert any(t["status"] == "FAILED" for t in conn["setup_tests"])
    assert (await _events(app, conn["id"]))[-1] == "connection.setup_failed"
    r = await api.patch(f"/v1/connections/{conn['id']}", json={"config": {"api_key": "good"}})
    assert r.status_code == 200, r.text
    r = await api.post(f"/v1/connections/{conn['id']}/test", json={})
    assert r.json()["state"] == "connected", r.json()


async def test_token_retention_discard_shreds_tokens_after_hand_off(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api(onboarding={"token_retention": "discard"})
    result = await oauth_connect(api, "acme", "salesforce")
    assert result["status"] == "connected", result
    from app.vault.models import VaultSecret

    async with app.state.sessionmaker() as s:
        fields = list(
            (
                await s.scalars(
                    select(VaultSecret.field).where(VaultSecret.owner_id == result["connection_id"])
                )
            ).all()
        )
    assert not {"refresh_token", "access_token"} & set(fields), fields


async def test_offboarding_with_fivetran_down_is_202_then_resumed(
    make_api: Callable[..., Any],
) -> None:
    from app.onboarding.end_users import resume_offboarding
    from app.onboarding.models import EndUser

    app, api = await make_api()
    sim = Simulator(api)
    conn = (await api.post("/v1/connections", json=STRIPE)).json()
    async with app.state.sessionmaker() as s:
        eu_id = await s.scalar(select(EndUser.id).where(EndUser.external_id == "acme"))
    await sim.fault(method="DELETE", path_regex=r"^/v1/connections/", status=503, count=99)
    r = await api.delete("/v1/end-users/acme")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "offboarding" and body["offboarding"]["state"] == "in_progress"
    # Secrets are shredded already; the end-user is invisible; no new work is accepted.
    assert await vault_rows(app, eu_id) == 0
    problem(await api.get("/v1/end-users/acme"), 404, "end_user_not_found")
    problem(await api.post("/v1/connections", json=STRIPE), 404, "end_user_not_found")
    problem(await api.put("/v1/end-users/acme", json={}), 409, "end_user_offboarding")
    assert (await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}")).status_code == 200
    await sim.clear_faults()
    async with app.state.sessionmaker() as s:
        assert await resume_offboarding(s, app.state) == 1
        await s.commit()
    assert (await sim.get(f"/v1/connections/{conn['fivetran_connection_id']}")).status_code == 404
    assert (await sim.get(f"/v1/groups/{conn['group_id']}")).status_code == 404
    # A retried DELETE of a finished offboarding is a 404; the id can be onboarded again.
    problem(await api.delete("/v1/end-users/acme"), 404)
    r = await api.put("/v1/end-users/acme", json={})
    assert r.status_code == 201 and r.json()["fivetran_group_id"] != conn["group_id"]


async def test_pause_then_resume_never_turns_a_failed_setup_into_connected(
    make_api: Callable[..., Any],
) -> None:
    """§5: only passing setup tests lead from ``setup_failed`` to ``connected``. Pausing a
    connection whose tests failed and resuming it must bring it back to ``setup_failed``."""
    app, api = await make_api()
    body = {**STRIPE, "credentials": {"api_key": "invalid"}}  # the simulator's bad value
    conn = (await api.post("/v1/connections", json=body)).json()
    assert conn["state"] == "setup_failed", conn
    r = await api.patch(f"/v1/connections/{conn['id']}", json={"paused": True})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "paused"
    r = await api.patch(f"/v1/connections/{conn['id']}", json={"paused": False})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "setup_failed", r.json()
    events = await _events(app, conn["id"])
    assert "connection.connected" not in events and "connection.resumed" not in events, events


async def test_offboarding_during_an_inflight_create_leaves_no_fivetran_connection(
    make_api: Callable[..., Any],
) -> None:
    """An end-user offboarded while its connection's Fivetran create is in flight: the
    connection Fivetran creates after the offboarding looked must not survive (it would hold
    the end-user's credentials and sync their data after the DELETE said 204)."""
    import asyncio

    _, api = await make_api(onboarding={"group_strategy": "shared"})
    sim = Simulator(api)
    group_id = (await api.get("/v1/end-users/acme")).json()["fivetran_group_id"]
    await sim.fault(method="POST", path_regex="^/v1/connections$", delay_seconds=0.5, count=1)
    create = asyncio.create_task(api.post("/v1/connections", json=STRIPE))
    for _ in range(100):  # wait until the row is committed and the create is at Fivetran
        if (await api.get("/v1/connections", params={"end_user": "acme"})).json()["items"]:
            break
        await asyncio.sleep(0.01)
    r = await api.delete("/v1/end-users/acme")
    assert r.status_code == 204, r.text
    r = await create
    assert r.status_code == 404, r.text
    assert await sim.connections_in(group_id) == []


async def test_same_idempotency_key_twice_at_once_creates_and_reports_once(
    make_api: Callable[..., Any],
) -> None:
    """A client retrying its POST (same key, same body) while the first one is still at
    Fivetran gets a clear answer, and the connection is created and announced once."""
    import asyncio

    app, api = await make_api()
    sim = Simulator(api)
    await sim.fault(method="POST", path_regex="^/v1/connections$", delay_seconds=0.5, count=1)
    headers = {"Idempotency-Key": "retry-me"}
    first = asyncio.create_task(api.post("/v1/connections", json=STRIPE, headers=headers))
    for _ in range(100):
        if (await api.get("/v1/connections", params={"end_user": "acme"})).json()["items"]:
            break
        await asyncio.sleep(0.01)
    second = await api.post("/v1/connections", json=STRIPE, headers=headers)
    r = await first
    assert r.status_code == 201, r.text
    assert second.status_code == 409, second.text
    assert second.json()["code"] == "idempotency_key_in_progress"
    cid = r.json()["id"]
    assert (await _events(app, cid)).count("connection.created") == 1
    creates = [
        x for x in await sim.requests() if x["method"] == "POST" and x["path"] == "/v1/connections"
    ]
    assert len(creates) == 1, creates


async def test_schema_patch_naming_an_unknown_schema_is_a_clear_422(
    make_api: Callable[..., Any],
) -> None:
    """A schema or table the connection does not have is the caller's mistake (422 naming
    ``schemas``), not a 502 blaming Fivetran."""
    _, api = await make_api()
    cid = (await api.post("/v1/connections", json=STRIPE)).json()["id"]
    r = await api.patch(
        f"/v1/connections/{cid}/schema",
        json={"schemas": {"no_such_schema": {"tables": {"t": {"enabled": False}}}}},
    )
    body = problem(r, 422, "unknown_schema_item")
    assert body["field"] == "schemas", body
