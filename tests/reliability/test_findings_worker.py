"""Finding: the worker ignored its lease setting (a dead worker's deliveries waited ~60 s
with a 5 s lease). The lease configured is the lease taken, and a batch fits into it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select

from app.events.models import EventDelivery
from tests.fixtures.events import emit_events


async def test_dead_workers_deliveries_come_back_after_the_configured_lease(
    events_settings, receiver, worker_for, clock
) -> None:
    from app.main import create_app

    settings = events_settings(lease_seconds=5.0, delivery_timeout_seconds=10.0, batch_size=50)
    first = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with first.router.lifespan_context(first):
        await emit_events(first, [("connection.created", "con_A")])
        receiver.delay = 30
        doomed = worker_for(first, worker_id="doomed")
        assert doomed.lease_seconds == 5.0
        assert doomed.send_timeout <= 4.0  # a send never outlives the lease
        task = asyncio.create_task(doomed.run_once())
        for _ in range(200):
            if receiver.in_flight == 1:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    receiver.delay = 0
    second = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with second.router.lifespan_context(second):
        survivor = worker_for(second, worker_id="survivor")
        async with second.state.sessionmaker() as session:
            leased = (await session.scalars(select(EventDelivery.leased_until))).all()
        assert len(leased) == 1 and leased[0] is not None
        assert (leased[0] - clock()).total_seconds() <= 5.0
        clock.advance(5.5)
        await survivor.run_until_idle()
        async with second.state.sessionmaker() as session:
            statuses = (await session.scalars(select(EventDelivery.status))).all()
    assert set(statuses) == {"delivered"}
