"""An end-user whose Fivetran group was deleted by hand: connection creation answers 409
``end_user_group_missing`` (not a gateway error), ``PUT /v1/end-users/{id}`` repairs the group
(and destination) and records it, and the left-behind connection then finishes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.onboarding.conftest import SIM, Simulator, problem

STRIPE = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_l"}}
OWN_DESTINATION = {
    "service": "snowflake",
    "region": "AWS_US_EAST_1",
    "time_zone_offset": "-5",
    "config": {
        "host": "acct.snowflakecomputing.com",
        "port": 443,
        "database": "fivetran",
        "user": "ft",
        "password": "pw-secret",
    },
}


@pytest.fixture
def make_api(make_app_client: Callable[..., Any]) -> Callable[..., Any]:
    return lambda strategy: make_app_client(onboarding={"group_strategy": strategy})


async def _delete_group(api: httpx.AsyncClient, group_id: str) -> None:
    """Someone deletes the group by hand at Fivetran (here: the simulator's REST API)."""
    r = await api.delete(
        f"{SIM}/v1/groups/{group_id}",
        auth=("sandbox_key", "sandbox_secret"),
        headers={"Authorization": "", "Accept": "application/json"},
    )
    assert r.status_code == 200, r.text


async def _repairs(app: FastAPI) -> list[dict[str, Any]]:
    from app.events.models import Event

    async with app.state.sessionmaker() as s:
        rows = (await s.scalars(select(Event).where(Event.kind == "end_user.group_repaired"))).all()
        return [dict(r.data) for r in rows]


async def _create_fails_with_group_missing(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator, body: dict[str, Any]
) -> str:
    before = len(await sim.requests())
    r = await api.post("/v1/connections", json=body)
    body_ = problem(r, 409, "end_user_group_missing")
    assert "PUT /v1/end-users" in body_["detail"]
    # Nothing was created at Fivetran; ours stays resumable, without the dead group.
    created = [
        q
        for q in (await sim.requests())[before:]
        if q["method"] == "POST" and q["path"] == "/v1/connections" and q["status"] < 300
    ]
    assert created == []
    from app.onboarding.models import Connection

    async with app.state.sessionmaker() as s:
        conn = await s.get(Connection, body_["connection_id"])
        assert conn is not None and conn.state == "creating" and conn.group_id is None
        assert conn.state_reason == "end_user_group_missing"
    return str(body_["connection_id"])


async def _resume(app: FastAPI, connection_id: str) -> dict[str, Any]:
    from app.onboarding.connections import resume_creating
    from app.onboarding.models import Connection

    async with app.state.sessionmaker() as s:
        await resume_creating(s, app.state)
        await s.commit()
    async with app.state.sessionmaker() as s:
        conn = await s.get(Connection, connection_id)
        assert conn is not None
        return {"state": conn.state, "group_id": conn.group_id}


async def test_per_end_user_group_deleted_at_fivetran_is_repaired_by_put(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api("per_end_user")
    sim = Simulator(api)
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    old_group = r.json()["fivetran_group_id"]
    assert (await api.post("/v1/connections", json=STRIPE)).status_code == 201
    await _delete_group(api, old_group)

    pending = await _create_fails_with_group_missing(app, api, sim, STRIPE)

    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 200, r.text
    new_group = r.json()["fivetran_group_id"]
    assert new_group and new_group != old_group
    assert (await sim.get(f"/v1/groups/{new_group}")).status_code == 200
    dest = await sim.get(f"/v1/destinations/{new_group}")
    assert dest.status_code == 200 and dest.json()["data"]["service"] == "big_query"
    assert await _repairs(app) == [
        {
            "end_user": "acme",
            "group_strategy": "per_end_user",
            "scope": "end_user",
            "missing_group_id": old_group,
            "group_id": new_group,
        }
    ]
    # A healthy group is not repaired again.
    assert (await api.put("/v1/end-users/acme", json={})).json()["fivetran_group_id"] == new_group
    assert len(await _repairs(app)) == 1

    # The connection left behind finishes in the new group.
    assert await _resume(app, pending) == {"state": "connected", "group_id": new_group}


async def test_own_destination_must_be_given_again(make_api: Callable[..., Any]) -> None:
    app, api = await make_api("per_end_user")
    sim = Simulator(api)
    r = await api.put("/v1/end-users/byo", json={"destination": OWN_DESTINATION})
    assert r.status_code == 201, r.text
    old_group = r.json()["fivetran_group_id"]
    await _delete_group(api, old_group)

    problem(await api.put("/v1/end-users/byo", json={}), 409, "end_user_destination_missing")
    r = await api.get("/v1/end-users/byo")
    assert r.json()["fivetran_group_id"] == old_group  # nothing half-written
    assert await _repairs(app) == []

    r = await api.put("/v1/end-users/byo", json={"destination": OWN_DESTINATION})
    assert r.status_code == 200, r.text
    new_group = r.json()["fivetran_group_id"]
    assert new_group != old_group
    dest = await sim.get(f"/v1/destinations/{new_group}")
    assert dest.json()["data"]["service"] == "snowflake"
    assert [e["missing_group_id"] for e in await _repairs(app)] == [old_group]


async def test_shared_group_deleted_in_the_sandbox_is_recreated(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api("shared")
    old_group = (await api.put("/v1/end-users/acme", json={})).json()["fivetran_group_id"]
    await _delete_group(api, old_group)
    r = await api.put("/v1/end-users/acme", json={})
    assert r.status_code == 200, r.text
    new_group = r.json()["fivetran_group_id"]
    assert new_group != old_group
    assert (await api.post("/v1/connections", json=STRIPE)).json()["state"] == "connected"
    repairs = await _repairs(app)
    assert [(e["scope"], e["missing_group_id"], e["group_id"]) for e in repairs] == [
        ("shared", old_group, new_group)
    ]


async def test_per_service_group_deleted_is_forgotten_and_recreated(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api("per_service")
    sim = Simulator(api)
    assert (await api.put("/v1/end-users/acme", json={})).status_code == 201
    first = (await api.post("/v1/connections", json=STRIPE)).json()
    old_group = first["group_id"]
    await _delete_group(api, old_group)
    assert (await api.put("/v1/end-users/other", json={})).status_code == 201

    pending = await _create_fails_with_group_missing(app, api, sim, {**STRIPE, "end_user": "other"})
    assert (await api.put("/v1/end-users/other", json={})).status_code == 200
    assert [(e["scope"], e["missing_group_id"]) for e in await _repairs(app)] == [
        ("service:stripe", old_group)
    ]
    resumed = await _resume(app, pending)
    assert resumed["state"] == "connected" and resumed["group_id"] not in (None, old_group)


async def test_a_fivetran_outage_during_the_check_does_not_fail_the_put(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api("per_end_user")
    sim = Simulator(api)
    group = (await api.put("/v1/end-users/acme", json={})).json()["fivetran_group_id"]
    await sim.fault(method="GET", path_regex=f"^/v1/groups/{group}$", status=503, count=20)
    r = await api.put("/v1/end-users/acme", json={"name": "Still Acme"})
    assert r.status_code == 200, r.text
    assert r.json()["fivetran_group_id"] == group and r.json()["name"] == "Still Acme"
    assert await _repairs(app) == []
    hits = [q for q in await sim.requests() if q["path"] == f"/v1/groups/{group}"]
    assert hits and all(q["status"] == 503 for q in hits)  # it did ask, and was refused
    await sim.clear_faults()
