"""Findings of the outside probe on the Fivetran create: lost answers must neither orphan nor
duplicate a connection; every path ends in a terminal state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.onboarding import Simulator, oauth_connect

STRIPE = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_lost"}}
CREATE = r"^/v1/connections/?$"


@pytest.fixture
async def acme(api: httpx.AsyncClient) -> httpx.AsyncClient:
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    return api


async def _remote(sim: Simulator, group_id: str, service: str) -> list[dict[str, Any]]:
    return [c for c in await sim.connections_in(group_id) if c["service"] == service]


async def test_lost_answer_on_the_last_attempt_is_adopted_not_orphaned(
    acme: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Awaitable[int]]
) -> None:
    # 503, lookup, 503, lookup, then a create whose answer is lost (create_attempts = 3).
    await sim.fault(method="POST", path_regex=CREATE, status=503, count=2)
    await sim.fault(method="POST", path_regex=CREATE, status=502, count=1, after=True)
    r = await acme.post("/v1/connections", json=STRIPE)
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "connected", conn
    remote = await _remote(sim, conn["group_id"], "stripe")
    assert [c["id"] for c in remote] == [conn["fivetran_connection_id"]]
    # The end-user's retry is a second, separate connection only by choice: nothing is left
    # creating and no Fivetran connection is without its row.
    assert await count_rows("connections", "state = 'creating'") == 0


async def test_schema_table_service_lost_answer_is_adopted(
    api: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Awaitable[int]]
) -> None:
    """google_sheets reports its schema as "schema.table": the recovery lookup must match."""
    assert (await api.put("/v1/end-users/org-9", json={"name": "Org 9"})).status_code == 201
    await sim.fault(method="POST", path_regex=CREATE, status=502, count=1, after=True)
    result = await oauth_connect(
        api, "org-9", "google_sheets", config={"sheet_id": "https://docs.example/s/1"}
    )
    assert result["status"] == "connected", result
    r = await api.get(f"/v1/connections/{result['connection_id']}")
    conn = r.json()
    assert conn["state"] == "connected", conn
    remote = await _remote(sim, conn["group_id"], "google_sheets")
    assert [c["id"] for c in remote] == [conn["fivetran_connection_id"]]
    assert remote[0]["schema"].endswith(".google_sheets")
    assert await count_rows("connections", "state = 'creating'") == 0


async def test_fivetran_404_during_resume_ends_in_a_terminal_state(
    acme: httpx.AsyncClient, sim: Simulator, app: FastAPI
) -> None:
    from app.connections.models import Connection
    from app.connections.service import resume_creating

    # The create is known at Fivetran but setup did not finish (tests fail with 503) ...
    await sim.fault(
        method="POST", path_regex=r"^/v1/connections/[^/]+/schemas", status=503, count=50
    )
    r = await acme.post("/v1/connections", json=STRIPE)
    assert r.status_code == 503, r.text
    cid = r.json()["connection_id"]
    await sim.clear_faults()
    async with app.state.sessionmaker() as s:
        row = await s.get(Connection, cid)
        assert row is not None and row.state == "creating" and row.fivetran_connection_id
        fivetran_id = row.fivetran_connection_id
    # ... then the connection is deleted at Fivetran: resume gets 404s.
    d = await sim.client.delete(
        f"/sandbox/fivetran/v1/connections/{fivetran_id}",
        auth=sim.auth,
        headers={"Authorization": "", "Accept": "application/json;version=2"},
    )
    assert d.status_code == 200, d.text
    async with app.state.sessionmaker() as s:
        await resume_creating(s, app.state)
    r = await acme.get(f"/v1/connections/{cid}")
    assert r.json()["state"] == "setup_failed", r.json()
    assert r.json()["state_reason"] == "fivetran_connection_not_found"
