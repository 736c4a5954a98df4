"""Reconciliation spends at most its share of the Fivetran hourly budget, and repairs
``creating`` connections left behind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.config import Settings
from app.connections.reconcile import pass_allowance

SIM = "/sandbox/fivetran"


async def _make_connections(c: httpx.AsyncClient, headers: dict[str, str], n: int) -> list[Any]:
    out = []
    for i in range(n):
        r = await c.put(f"/v1/end-users/user{i}", json={"name": f"U{i}"}, headers=headers)
        assert r.status_code in (200, 201), r.text
        r = await c.post(
            "/v1/connections",
            json={"end_user": f"user{i}", "service": "stripe", "credentials": {"api_key": "k"}},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        out.append(r.json())
    return out


async def _gets(c: httpx.AsyncClient) -> int:
    r = await c.get(f"{SIM}/_control/requests")
    items = r.json()["data"]["items"]
    return sum(
        1
        for x in items
        if x["method"] == "GET"
        and x["path"].rstrip("/").count("/") == 3
        and "/v1/connections/" in x["path"]
    )


def test_pass_allowance_is_a_share_of_the_hourly_budget(settings_factory) -> None:
    s: Settings = settings_factory(
        fivetran={"hourly_request_budget": 18_000},
        events={"reconcile_budget_share": 0.1, "reconcile_interval_seconds": 300},
    )
    assert pass_allowance(s, used_last_hour=0) == 150  # 1,800/h spread over 12 passes
    assert pass_allowance(s, used_last_hour=1_700) == 100
    assert pass_allowance(s, used_last_hour=1_800) == 0


@pytest.fixture
async def budget_app(events_settings, receiver):
    from app.main import create_app

    settings = events_settings(reconcile_budget_share=0.04, reconcile_interval_seconds=3600)
    settings = settings.model_copy(
        update={"fivetran": settings.fivetran.model_copy(update={"hourly_request_budget": 100})}
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        yield app


async def test_reconciliation_stays_within_its_budget(
    budget_app, worker_for, clock, make_api_key
) -> None:
    headers = {"Authorization": f"Bearer {await make_api_key(['admin'])}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=budget_app), base_url="http://127.0.0.1:8000"
    ) as c:
        await _make_connections(c, headers, 6)
        worker = worker_for(budget_app)
        clock.advance(budget_app.state.settings.events.reconcile_stale_after_seconds + 1)
        before = await _gets(c)
        assert await worker.reconcile_once() == 4  # 0.04 × 100 requests per hour
        assert await worker.reconcile_once() == 0  # the hour's share is spent
        assert await _gets(c) - before == 4
        clock.advance(3601)  # next hour: the two left over go first
        assert await worker.reconcile_once() == 4
        assert await _gets(c) - before == 8


async def test_creating_connection_is_resumed(
    events_app, events_client, worker_for, clock, auth_headers
) -> None:
    c = events_client
    await c.put("/v1/end-users/acme", json={"name": "Acme"}, headers=auth_headers)
    # Fivetran is down during the create: the connection stays 'creating'.
    r = await c.post(
        f"{SIM}/_control/faults",
        json={"method": "POST", "path_regex": "^/v1/connections$", "status": 503, "count": 20},
    )
    assert r.status_code == 201, r.text
    r = await c.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "k"}},
        headers=auth_headers,
    )
    assert r.status_code >= 500, r.text
    connection_id = r.json()["connection_id"]
    await c.delete(f"{SIM}/_control/faults")
    r = await c.get(f"/v1/connections/{connection_id}", headers=auth_headers)
    assert r.json()["state"] == "creating"
    worker = worker_for(events_app)
    assert await worker.reconcile_once() == 0  # may still be in its create request
    clock.advance(301)
    assert await worker.reconcile_once() == 1
    r = await c.get(f"/v1/connections/{connection_id}", headers=auth_headers)
    assert r.json()["state"] == "connected" and r.json()["fivetran_connection_id"]


async def test_background_loop_reconciles_by_itself(events_settings, receiver) -> None:
    """No webhook registered at all: only the in-API reconciliation loop can notice."""
    import asyncio

    from app.callers.service import create_api_key
    from app.main import create_app

    settings = events_settings(
        run_worker_in_api=True,
        poll_interval_seconds=0.05,
        reconcile_interval_seconds=0.2,
        reconcile_stale_after_seconds=0.1,
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session, session.begin():
            _, key = await create_api_key(session, name="t", scopes=["admin"])
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as c:
            [conn] = await _make_connections(c, headers, 1)
            r = await c.post(f"{SIM}/_control/connections/{conn['fivetran_connection_id']}/break")
            assert r.status_code == 200
            state = None
            for _ in range(100):
                await asyncio.sleep(0.05)
                r = await c.get(f"/v1/connections/{conn['id']}", headers=headers)
                state = r.json()["state"]
                if state == "broken":
                    break
            assert state == "broken"
            for _ in range(100):  # ... and the delivery loop tells the company
                if "connection.broken" in [x.type for x in receiver.accepted()]:
                    break
                await asyncio.sleep(0.05)
            ready = (await c.get("/readyz")).json()["checks"]["events_worker"]
    assert ready == {"ok": True}
    assert [x.type for x in receiver.accepted()][-1] == "connection.broken"


async def test_reconciliation_counts_the_requests_it_spends_not_the_connections(
    events_settings, receiver, worker_for, clock, make_api_key
) -> None:
    """While Fivetran answers 5xx, each refresh costs the client's retries too. The hour's
    share (0.04 × 100 = 4 requests) must bound what reconciliation sends, not the number of
    connections it touched."""
    from app.main import create_app

    settings = events_settings(reconcile_budget_share=0.04, reconcile_interval_seconds=3600)
    settings = settings.model_copy(
        update={
            "fivetran": settings.fivetran.model_copy(
                update={"hourly_request_budget": 100, "max_retries": 1}
            )
        }
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {await make_api_key(['admin'])}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as c:
            await _make_connections(c, headers, 6)
            r = await c.post(
                f"{SIM}/_control/faults",
                json={
                    "method": "GET",
                    "path_regex": "^/v1/connections/[^/]+$",
                    "status": 500,
                    "count": 1000,
                },
            )
            assert r.status_code == 201, r.text
            worker = worker_for(app)
            clock.advance(settings.events.reconcile_stale_after_seconds + 1)
            before = await _gets(c)
            await worker.reconcile_once()
            await worker.reconcile_once()  # the hour's share is spent: nothing more
            assert await _gets(c) - before <= 4
