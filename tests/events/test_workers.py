"""Workers: a process that dies mid-delivery loses nothing; several workers on PostgreSQL
share the work and never take the same attempt twice; the in-API loop delivers by itself."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from app.db import create_engine, create_sessionmaker
from app.events import delivery
from app.events.models import EventDelivery, EventDeliveryAttempt
from tests.fixtures.app import TEST_DB
from tests.fixtures.events import emit_events
from tests.fixtures.sandbox import eventually

postgres_only = pytest.mark.skipif(
    TEST_DB != "postgresql",
    reason="FOR UPDATE SKIP LOCKED leases need PostgreSQL (SQLite runs a single worker); "
    "run with PBF_TEST_DB=postgresql",
)


async def test_process_restart_mid_delivery_loses_nothing(
    events_settings, receiver, worker_for, clock
) -> None:
    from app.main import create_app

    settings = events_settings()
    first_app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with first_app.router.lifespan_context(first_app):
        ids = await emit_events(
            first_app,
            [
                ("connection.created", "con_A"),
                ("connection.connected", "con_A"),
                ("connection.created", "con_B"),
            ],
        )
        receiver.delay = 30  # the receiver is slow; the process dies while it waits
        task = asyncio.create_task(worker_for(first_app, worker_id="doomed").run_once())
        for _ in range(200):
            if receiver.in_flight == 2:
                break
            await asyncio.sleep(0.01)
        assert receiver.in_flight == 2  # con_A's first event and con_B's are in flight
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert receiver.received == []

    receiver.delay = 0
    second_app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with second_app.router.lifespan_context(second_app):
        survivor = worker_for(second_app, worker_id="survivor")
        assert (await survivor.run_deliveries_once()).claimed == 0  # leases still held
        clock.advance(survivor.lease_seconds + 1)
        await survivor.run_until_idle()
        async with second_app.state.sessionmaker() as session:
            statuses = (await session.scalars(select(EventDelivery.status))).all()
    assert receiver.unique_ids() == [ids[0], ids[2], ids[1]] or receiver.unique_ids() == [
        ids[2],
        ids[0],
        ids[1],
    ]
    assert set(statuses) == {"delivered"}
    assert [r.attempt for r in receiver.received if r.event_id == ids[0]] == [2]


async def test_in_api_worker_delivers_without_help(events_settings, receiver) -> None:
    from app.main import create_app

    settings = events_settings(run_worker_in_api=True, poll_interval_seconds=0.05)
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        [event_id] = await emit_events(app, [("connection.broken", "con_A")])
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.02)
        assert receiver.unique_ids() == [event_id]
    assert app.state.events_worker._tasks == []  # stopped with the lifespan


@postgres_only
async def test_skip_locked_claims_are_disjoint(events_app, worker_for, clock) -> None:
    await emit_events(events_app, [("connection.created", f"con_{i}") for i in range(6)])
    worker = worker_for(events_app)
    async with events_app.state.sessionmaker() as session, session.begin():
        await delivery.fan_out(session, worker.endpoints, now=clock())
    maker = events_app.state.sessionmaker
    async with maker() as s1, maker() as s2:
        await s1.begin()
        await s2.begin()
        kw = {"endpoint_ids": ["main"], "now": clock(), "lease_seconds": 30, "limit": 4}
        a = await delivery.claim(s1, worker_id="A", **kw)  # holds its row locks, uncommitted
        b = await delivery.claim(s2, worker_id="B", **kw)  # skips them instead of waiting
        await s1.commit()
        await s2.commit()
    assert len(a) == 4 and len(b) == 2
    assert not {x.delivery_id for x in a} & {x.delivery_id for x in b}


@postgres_only
async def test_two_workers_share_the_work_without_double_delivery(
    events_app, receiver, worker_for, clock
) -> None:
    items = [
        (kind, f"con_{i}")
        for kind in ("connection.created", "connection.connected", "connection.sync_succeeded")
        for i in range(8)
    ]
    ids = await emit_events(events_app, items)
    receiver.delay = 0.02
    settings = events_app.state.settings.model_copy(
        update={"events": events_app.state.settings.events.model_copy(update={"batch_size": 3})}
    )
    engines = [create_engine(settings.effective_database_url) for _ in range(2)]
    try:
        workers = [
            worker_for(
                events_app,
                worker_id=f"w{i}",
                settings=settings,
                sessionmaker=create_sessionmaker(engine),
            )
            for i, engine in enumerate(engines)
        ]

        async def drive(worker) -> int:
            total = 0
            for _ in range(60):
                stats = await worker.run_deliveries_once()
                total += stats.delivered
                if len(receiver.unique_ids()) == len(ids):
                    break
                await asyncio.sleep(0)
            return total

        done = await asyncio.gather(*(drive(w) for w in workers))
    finally:
        for engine in engines:
            await engine.dispose()
    # Everything arrived exactly once (no failures, so at-least-once means once here).
    counts = Counter(r.event_id for r in receiver.received)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert all(n > 0 for n in done), done  # both workers took part
    # Order per connection held across workers.
    by_conn: dict[str, list[str]] = {}
    for r in receiver.received:
        by_conn.setdefault(r.connection_id, []).append(r.type)
    assert all(
        v == ["connection.created", "connection.connected", "connection.sync_succeeded"]
        for v in by_conn.values()
    )
    async with events_app.state.sessionmaker() as session:
        attempts = await session.scalar(select(func.count()).select_from(EventDeliveryAttempt))
        workers_used = set((await session.scalars(select(EventDeliveryAttempt.worker))).all())
    assert attempts == len(ids) and workers_used == {"w0", "w1"}


async def test_metrics_and_readiness(events_settings, receiver) -> None:
    from app.main import create_app

    settings = events_settings(run_worker_in_api=True, poll_interval_seconds=0.05)
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    delivered = 'pbf_event_delivery_attempts_total{endpoint="main",outcome="delivered"} 1.0'
    async with app.router.lifespan_context(app):
        await emit_events(app, [("connection.broken", "con_A")])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as c:

            async def metrics_after_delivery() -> str | None:
                # The receiver gets the request before the worker counts the attempt: wait
                # for the count itself, not for the receiver (that race was the flake).
                text = (await c.get("/metrics")).text
                return text if delivered in text else None

            text = await eventually(metrics_after_delivery, what="the delivery is counted")
            assert len(receiver.received) == 1
            bad = await c.post("/v1/webhooks/fivetran", content=b"{}")
            assert bad.status_code == 401
            ready = (await c.get("/readyz")).json()
            text = (await c.get("/metrics")).text
    assert ready["checks"]["events_worker"] == {"ok": True}
    assert 'pbf_events_emitted_total{type="connection.broken"} 1.0' in text
    assert delivered in text
    assert 'pbf_fivetran_webhooks_total{event="-",outcome="rejected"} 1.0' in text
