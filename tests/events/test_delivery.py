"""Outbox → signed deliveries: at least once, in order per connection, backoff, dead letters,
leases that survive a crashed worker. Drives the real app and worker against a receiver app
served through the outbound transport."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.events import delivery
from app.events.models import Event, EventDelivery, EventDeliveryAttempt
from app.events.outbox import emit
from tests.fixtures.events import RECEIVER_SECRET, RECEIVER_URL, emit_events


async def test_event_is_delivered_signed_with_ids_only(events_app, receiver, worker_for) -> None:
    [event_id] = await emit_events(events_app, [("connection.broken", "con_A")])
    stats = await worker_for(events_app).run_deliveries_once()
    assert (stats.fanned_out, stats.claimed, stats.delivered) == (1, 1, 1)
    [got] = receiver.received
    assert got.signature_ok and got.event_id == event_id and got.attempt == 1
    assert set(got.body) == {"id", "type", "created_at", "data"}
    assert got.body["type"] == "connection.broken"
    assert got.body["data"] == {"state": "broken", "connection_id": "con_A", "end_user": "acme"}
    assert RECEIVER_SECRET not in json.dumps(got.body)
    # Nothing left to do.
    again = await worker_for(events_app).run_deliveries_once()
    assert again.claimed == 0 and len(receiver.received) == 1


async def test_emit_is_part_of_the_callers_transaction(events_app) -> None:
    with pytest.raises(RuntimeError):
        async with events_app.state.sessionmaker() as session, session.begin():
            await emit(session, kind="connection.created", data={}, connection_id="con_X")
            raise RuntimeError("state change failed")
    async with events_app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Event)) == 0


async def test_emit_refuses_secrets_and_unknown_kinds(events_app) -> None:
    async with events_app.state.sessionmaker() as session, session.begin():
        with pytest.raises(ValueError, match="secret"):
            await emit(session, kind="connection.created", data={"refresh_token": "x"})
        with pytest.raises(ValueError, match="secret"):
            await emit(session, kind="connection.created", data={"auth": {"client_secret": "x"}})
        with pytest.raises(ValueError, match="kind"):
            await emit(session, kind="connection.exploded", data={})


def _order_by_connection(received: list[Any]) -> dict[str | None, list[str]]:
    out: dict[str | None, list[str]] = {}
    for r in received:
        if r.signature_ok and r.event_id not in out.setdefault(r.connection_id, []):
            out[r.connection_id].append(r.event_id)
    return out


async def test_receiver_down_then_up_delivers_everything_in_order(
    events_app, receiver, worker_for, clock
) -> None:
    ids = await emit_events(
        events_app,
        [
            ("connection.created", "con_A"),
            ("connection.created", "con_B"),
            ("connection.connected", "con_A"),
            ("connection.sync_succeeded", "con_A"),
            ("connection.connected", "con_B"),
            ("connection.broken", "con_A"),
        ],
    )
    expected = {"con_A": [ids[0], ids[2], ids[3], ids[5]], "con_B": [ids[1], ids[4]]}
    worker = worker_for(events_app)
    receiver.down_status = 503
    for _ in range(3):
        stats = await worker.run_deliveries_once()
        # Only the head of each connection's queue is ever attempted.
        assert stats.claimed == 2 and stats.retrying == 2
        clock.advance(120)
    async with events_app.state.sessionmaker() as session:
        rows = (await session.scalars(select(EventDelivery))).all()
        heads = {d.id for d in rows if d.attempts}
        assert len(heads) == 2 and all(d.last_error == "http_503" for d in rows if d.attempts)
    receiver.down_status = None
    for _ in range(10):
        clock.advance(120)
        await worker.run_deliveries_once()
    assert _order_by_connection(receiver.received) == expected
    assert sorted(receiver.unique_ids()) == sorted(ids)


@pytest.mark.db_independent
async def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    import random

    rng = random.Random(1)
    delays = [delivery.backoff_seconds(n, base=5, maximum=3600, rng=rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        full = min(3600, 5 * 2 ** (n - 1))
        assert full / 2 <= d <= full
    assert delays[-1] > delays[0] * 8
    assert delivery.backoff_seconds(1, base=5, maximum=3600, retry_after=90, rng=rng) >= 90
    assert delivery.backoff_seconds(1, base=5, maximum=60, retry_after=9999, rng=rng) == 60


async def test_dead_after_max_attempts_unblocks_the_next_and_can_be_redelivered(
    events_app, events_client, receiver, worker_for, clock, auth_headers
) -> None:
    first, second = await emit_events(
        events_app, [("connection.created", "con_A"), ("connection.connected", "con_A")]
    )
    worker = worker_for(events_app)
    receiver.down_status = 500
    for _ in range(5):  # max_attempts = 5 in the test settings
        stats = await worker.run_deliveries_once()
        assert stats.claimed == 1
        clock.advance(3600)
    assert stats.dead == 1
    r = await events_client.get("/v1/events", params={"status": "dead"}, headers=auth_headers)
    assert [e["id"] for e in r.json()["items"]] == [first]
    assert r.json()["items"][0]["deliveries"][0]["attempts"] == 5
    receiver.down_status = None
    await worker.run_deliveries_once()
    assert receiver.unique_ids() == [second]  # the dead one no longer blocks its connection

    r = await events_client.post(f"/v1/events/{first}/redeliver", headers=auth_headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    await worker.run_deliveries_once()
    assert receiver.unique_ids() == [second, first]
    assert receiver.received[-1].attempt == 6  # attempt numbers keep counting
    r = await events_client.get(f"/v1/events/{first}", headers=auth_headers)
    assert r.json()["status"] == "delivered"


async def test_crashed_worker_lease_expires_and_nothing_is_lost(
    events_app, receiver, worker_for, clock
) -> None:
    first, second = await emit_events(
        events_app, [("connection.created", "con_A"), ("connection.connected", "con_A")]
    )
    crashed = worker_for(events_app, worker_id="crashed")
    async with events_app.state.sessionmaker() as session, session.begin():
        await delivery.fan_out(session, crashed.endpoints, now=clock())
    async with events_app.state.sessionmaker() as session, session.begin():
        taken = await delivery.claim(
            session,
            worker_id="crashed",
            endpoint_ids=["main"],
            now=clock(),
            lease_seconds=30,
            limit=10,
        )
    assert [t.event_id for t in taken] == [first]  # the second waits behind the first
    # ... and the process is gone before sending anything.
    survivor = worker_for(events_app, worker_id="survivor")
    stats = await survivor.run_deliveries_once()
    assert stats.claimed == 0 and receiver.received == []  # lease still held
    clock.advance(31)
    await survivor.run_until_idle()
    assert receiver.unique_ids() == [first, second]
    async with events_app.state.sessionmaker() as session:
        attempts = (
            await session.execute(
                select(EventDeliveryAttempt.worker, EventDeliveryAttempt.attempt).order_by(
                    EventDeliveryAttempt.id
                )
            )
        ).all()
    assert [tuple(a) for a in attempts] == [("crashed", 1), ("survivor", 2), ("survivor", 1)]
    # A late outcome from the crashed worker cannot overwrite the survivor's result.
    async with events_app.state.sessionmaker() as session, session.begin():
        status = await delivery.finish(
            session,
            taken[0],
            delivery.Outcome(False, 500, "http_500"),
            worker_id="crashed",
            now=clock(),
            max_attempts=5,
            backoff_base=1,
            backoff_max=60,
        )
    assert status is None
    async with events_app.state.sessionmaker() as session:
        statuses = set((await session.scalars(select(EventDelivery.status))).all())
    assert statuses == {"delivered"}


async def test_bad_receiver_secret_means_retry_not_success(
    events_app, receiver, worker_for
) -> None:
    receiver.secrets = ["rotated-away"]
    await emit_events(events_app, [("connection.broken", "con_A")])
    stats = await worker_for(events_app).run_deliveries_once()
    assert stats.retrying == 1 and receiver.rejected == 1


async def test_redirects_are_not_followed(events_app, receiver, worker_for) -> None:
    receiver.down_status = 307  # e.g. a receiver moved: never follow, retry and show it
    await emit_events(events_app, [("connection.broken", "con_A")])
    stats = await worker_for(events_app).run_deliveries_once()
    assert stats.retrying == 1
    async with events_app.state.sessionmaker() as session:
        row = await session.scalar(select(EventDelivery))
    assert row is not None and row.last_error == "http_307" and row.status == "pending"


async def test_retention_deletes_only_settled_old_events(
    events_app, receiver, worker_for, clock
) -> None:
    delivered, waiting = await emit_events(
        events_app, [("connection.created", "con_A"), ("connection.created", "con_B")]
    )
    worker = worker_for(events_app)
    receiver.down_status = None
    async with events_app.state.sessionmaker() as session, session.begin():
        await delivery.fan_out(session, worker.endpoints, now=clock())
        # con_B's delivery is still retrying.
        await session.execute(
            update(EventDelivery)
            .where(EventDelivery.ordering_key == "con_B")
            .values(next_attempt_at=clock() + timedelta(days=365))
        )
    await worker.run_until_idle()
    assert receiver.unique_ids() == [delivered]
    assert await worker.prune_once() == (0, 0)  # too recent
    clock.advance(31 * 86400)
    assert await worker.prune_once() == (1, 0)
    async with events_app.state.sessionmaker() as session:
        left = list((await session.scalars(select(Event.id))).all())
        attempts = await session.scalar(select(func.count()).select_from(EventDeliveryAttempt))
    assert left == [waiting] and attempts == 0


async def test_a_worker_without_endpoints_leaves_events_alone(
    events_app, events_settings, receiver, worker_for
) -> None:
    [event_id] = await emit_events(events_app, [("connection.broken", "con_A")])
    misconfigured = worker_for(events_app, settings=events_settings(endpoints=[]))
    stats = await misconfigured.run_deliveries_once()
    assert stats.fanned_out == 0
    await worker_for(events_app).run_until_idle()
    assert receiver.unique_ids() == [event_id]


async def test_redelivery_to_one_endpoint_before_fan_out_keeps_the_others(
    events_settings, receiver, worker_for, make_api_key
) -> None:
    """``POST /v1/events/{id}/redeliver {endpoint_id}`` on an event the worker has not fanned
    out yet must not take the event away from the other endpoints."""
    from app.main import create_app
    from tests.fixtures.events import endpoint_config

    settings = events_settings(
        endpoints=[endpoint_config(id="a"), endpoint_config(id="b", url=RECEIVER_URL + "?b")]
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        headers = {"Authorization": f"Bearer {await make_api_key(['admin'])}"}
        (event_id,) = await emit_events(app, [("connection.created", "con_A")])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as c:
            r = await c.post(
                f"/v1/events/{event_id}/redeliver", json={"endpoint_id": "a"}, headers=headers
            )
            assert r.status_code == 202, r.text
        await worker_for(app).run_deliveries_once()
        assert [r.event_id for r in receiver.accepted()] == [event_id, event_id]
