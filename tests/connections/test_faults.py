"""Fivetran failing mid-create: never a lost secret, never a duplicate connection."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.fixtures.onboarding import Simulator, problem

STRIPE = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_fault"}}
CREATE = r"^/v1/connections/?$"
TIMEOUT_SECONDS = 3.0


async def _posts(sim: Simulator) -> int:
    return sum(
        1
        for e in await sim.requests()
        if e.get("method") == "POST"
        and str(e.get("path", "")).rstrip("/").endswith("/v1/connections")
    )


async def _remote(sim: Simulator, group_id: str) -> list[dict[str, Any]]:
    return [c for c in await sim.connections_in(group_id) if c["service"] == "stripe"]


@pytest.fixture
async def acme(api: httpx.AsyncClient) -> httpx.AsyncClient:
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    return api


@pytest.mark.parametrize("after", [False, True], ids=["5xx-before-processing", "response-lost"])
async def test_5xx_during_create_yields_exactly_one_connection(
    acme: httpx.AsyncClient, sim: Simulator, after: bool
) -> None:
    await sim.fault(method="POST", path_regex=CREATE, status=502, count=1, after=after)
    r = await acme.post("/v1/connections", json=STRIPE)
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "connected"
    remote = await _remote(sim, conn["group_id"])
    assert [c["id"] for c in remote] == [conn["fivetran_connection_id"]]
    # Before-processing: the create was sent twice; lost response: once, then adopted.
    assert await _posts(sim) == (1 if after else 2)


@pytest.fixture
async def slow_fivetran(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    # Every Fivetran call of this app has this timeout, so it must be long enough for a
    # normal in-process call on a loaded machine (0.3 s was not: a group create or look-up
    # timed out under parallel load); the faulted create hangs until the timeout cancels it.
    settings = settings_factory(fivetran={"timeout_seconds": TIMEOUT_SECONDS})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
        ) as c:
            yield application, c


async def test_timeout_during_create_yields_exactly_one_connection(
    slow_fivetran: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, api = slow_fivetran
    sim = Simulator(api)
    assert (await api.put("/v1/end-users/acme", json={})).status_code == 201
    # The first create hangs (far past the client's timeout) before Fivetran processes it.
    await sim.fault(method="POST", path_regex=CREATE, status=None, delay_seconds=3600, count=1)
    started = time.monotonic()
    r = await api.post("/v1/connections", json=STRIPE)
    assert time.monotonic() - started >= TIMEOUT_SECONDS  # the hung create did time out
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "connected"
    remote = await _remote(sim, conn["group_id"])
    assert [c["id"] for c in remote] == [conn["fivetran_connection_id"]]


async def test_fivetran_down_then_retry_with_same_key_resumes_the_same_connection(
    acme: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Any]
) -> None:
    await sim.fault(method="POST", path_regex=CREATE, status=503, count=50)
    headers = {"Idempotency-Key": "create-stripe-1"}
    r = await acme.post("/v1/connections", json=STRIPE, headers=headers)
    body = problem(r, 503)
    connection_id = body["connection_id"]
    # The row and the secret are durable, in state creating; nothing exists at Fivetran.
    assert await count_rows("connections", "state = 'creating'") == 1
    assert await count_rows("vault_secrets", "owner_id = :cid", cid=connection_id) == 1
    r = await acme.get(f"/v1/connections/{connection_id}")
    assert r.json()["state"] == "creating"
    await sim.clear_faults()
    r = await acme.post("/v1/connections", json=STRIPE, headers=headers)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == connection_id
    assert r.json()["state"] == "connected"
    assert await count_rows("connections") == 1
    assert len(await _remote(sim, r.json()["group_id"])) == 1
    # Same key, same body again: the stored first response.
    again = await acme.post("/v1/connections", json=STRIPE, headers=headers)
    assert again.status_code == 201 and again.json() == r.json()
    assert again.headers.get("Idempotent-Replayed") == "true"


async def test_resume_creating_finishes_left_behind_connections(
    app: FastAPI, acme: httpx.AsyncClient, sim: Simulator
) -> None:
    from app.connections.service import resume_creating

    # The create happens but its response is lost, and every look-up fails too.
    await sim.fault(method="POST", path_regex=CREATE, status=500, count=1, after=True)
    await sim.fault(method="GET", path_regex=r"^/v1/groups/[^/]+/connections", status=503, count=99)
    r = await acme.post("/v1/connections", json=STRIPE)
    body = problem(r, 503)
    assert await _posts(sim) == 1
    await sim.clear_faults()
    async with app.state.sessionmaker() as session:
        assert await resume_creating(session, app.state) == 1
        await session.commit()
    r = await acme.get(f"/v1/connections/{body['connection_id']}")
    conn = r.json()
    assert conn["state"] == "connected", conn
    # Every lost-response create had in fact happened once; the lookups adopted it.
    assert [c["id"] for c in await _remote(sim, conn["group_id"])] == [
        conn["fivetran_connection_id"]
    ]


async def test_429_is_honoured(acme: httpx.AsyncClient, sim: Simulator) -> None:
    await sim.fault(method="POST", path_regex=CREATE, status=429, retry_after=0.2, count=1)
    r = await acme.post("/v1/connections", json=STRIPE)
    assert r.status_code == 201, r.text
    assert await _posts(sim) == 2
    statuses = [
        e.get("status")
        for e in await sim.requests()
        if e.get("method") == "POST"
        and str(e.get("path", "")).rstrip("/").endswith("/v1/connections")
    ]
    assert statuses == [429, 201]


async def test_long_429_is_passed_on_with_retry_after(
    acme: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Any]
) -> None:
    await sim.fault(method="POST", path_regex=CREATE, status=429, retry_after=3600, count=5)
    r = await acme.post("/v1/connections", json=STRIPE)
    problem(r, 429)
    assert r.headers["Retry-After"] == "3600"
    assert await count_rows("connections", "state = 'creating'") == 1
    assert await _posts(sim) == 1


async def test_startup_resume_finishes_creating_connections(
    app: FastAPI, acme: httpx.AsyncClient, sim: Simulator
) -> None:
    """The lifespan's resume (``resume_pending_work``) finishes a create left behind."""
    from app.connections.startup import resume_pending_work

    await sim.fault(method="POST", path_regex=CREATE, status=503, count=50)
    body = problem(await acme.post("/v1/connections", json=STRIPE), 503)
    await sim.clear_faults()
    assert await resume_pending_work(app) == (1, 0)
    r = await acme.get(f"/v1/connections/{body['connection_id']}")
    assert r.json()["state"] == "connected"
    assert await resume_pending_work(app) == (0, 0)
