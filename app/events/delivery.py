"""Outbox delivery: fan-out, leases, signed POSTs, outcomes, backoff and dead letters.

Design
------
* **Fan-out.** ``emit`` only writes the event. :func:`fan_out` turns each new event into one
  ``event_deliveries`` row per endpoint that wants its kind, in ``seq`` order. On PostgreSQL
  it runs under a transaction-scoped advisory lock, so concurrent workers never interleave.
* **Order per connection.** A delivery is *eligible* only when no earlier delivery for the
  same (endpoint, ``ordering_key``) is still ``pending``; the ordering key is the connection
  id. A later event for a connection waits until the earlier one is delivered or dead.
* **Leases.** :func:`claim` takes eligible rows by setting ``leased_until``/``lease_owner`` and
  numbering the attempt, in one committed transaction, *before* any HTTP. PostgreSQL uses
  ``SELECT … FOR UPDATE SKIP LOCKED`` so workers share the work; SQLite uses a conditional
  ``UPDATE … WHERE lease is free`` (single writer). A worker that dies keeps nothing: its
  leases expire and another worker takes the rows again (at least once).
* **Attempt rows.** Each claim inserts ``event_delivery_attempts(delivery_id, attempt)``
  under a unique constraint: the same attempt cannot be taken twice.
* **Outcome.** :func:`finish` applies the result only while the worker still owns the lease:
  2xx → ``delivered``; anything else → ``pending`` with exponential backoff and jitter (a
  receiver's ``Retry-After`` is honoured up to the maximum), or ``dead`` after
  ``max_attempts`` attempts in the current round.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.db import new_id
from app.events.models import (
    DELIVERY_DEAD,
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    Event,
    EventDelivery,
    EventDeliveryAttempt,
)
from app.events.receivers import Endpoint
from app.events.signing import ATTEMPT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, sign
from app.kit.transport import retry_after_seconds

log = logging.getLogger("pbf.events.delivery")

FANOUT_LOCK_KEY = 0x70BF_0E7E  # pg_advisory_xact_lock key of the fan-out step


def event_payload(event: Event) -> dict[str, Any]:
    """The delivered JSON document: ``{id, type, created_at, data}`` (ids and states only)."""
    return {
        "id": event.id,
        "type": event.kind,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


def event_body(event: Event) -> bytes:
    return json.dumps(event_payload(event), separators=(",", ":"), sort_keys=True).encode()


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def fan_out(
    session: AsyncSession, endpoints: dict[str, Endpoint], *, now: datetime, limit: int = 500
) -> list[str]:
    """Create the delivery rows of events not fanned out yet; returns their types."""
    if is_postgres(session):
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FANOUT_LOCK_KEY})
    events = (
        await session.scalars(
            select(Event).where(Event.fanned_out_at.is_(None)).order_by(Event.seq).limit(limit)
        )
    ).all()
    for event in events:
        for endpoint in endpoints.values():
            if endpoint.wants(event.kind):
                session.add(new_delivery(event, endpoint.id, now=now))
        event.fanned_out_at = now
    await session.flush()
    return [event.kind for event in events]


def new_delivery(event: Event, endpoint_id: str, *, now: datetime) -> EventDelivery:
    return EventDelivery(
        id=new_id("dlv"),
        event_seq=event.seq,
        endpoint_id=endpoint_id,
        ordering_key=event.connection_id or event.id,
        status=DELIVERY_PENDING,
        attempts=0,
        round_attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )


def _eligible(now: datetime, endpoint_ids: list[str]) -> ColumnElement[bool]:
    earlier = aliased(EventDelivery)
    blocked = exists().where(
        and_(
            earlier.endpoint_id == EventDelivery.endpoint_id,
            earlier.ordering_key == EventDelivery.ordering_key,
            earlier.event_seq < EventDelivery.event_seq,
            earlier.status == DELIVERY_PENDING,
        )
    )
    return and_(
        EventDelivery.status == DELIVERY_PENDING,
        EventDelivery.endpoint_id.in_(endpoint_ids),
        EventDelivery.next_attempt_at <= now,
        (EventDelivery.leased_until.is_(None)) | (EventDelivery.leased_until <= now),
        ~blocked,
    )


@dataclass(frozen=True)
class Claimed:
    """A leased delivery with everything needed to send it outside a transaction."""

    delivery_id: str
    endpoint_id: str
    attempt: int
    round_attempts: int
    event_id: str
    body: bytes


async def claim(
    session: AsyncSession,
    *,
    worker_id: str,
    endpoint_ids: list[str],
    now: datetime,
    lease_seconds: float,
    limit: int,
) -> list[Claimed]:
    """Lease up to ``limit`` eligible deliveries for ``worker_id`` (commit before sending)."""
    if not endpoint_ids:
        return []
    query = (
        select(EventDelivery.id)
        .where(_eligible(now, endpoint_ids))
        .order_by(EventDelivery.event_seq)
        .limit(limit)
    )
    if is_postgres(session):
        query = query.with_for_update(skip_locked=True)
    candidates = list((await session.scalars(query)).all())
    leased_until = now + timedelta(seconds=lease_seconds)
    taken: list[str] = []
    for delivery_id in candidates:
        # Conditional update: on SQLite this *is* the lease; on PostgreSQL the row is
        # already locked by us and the condition always holds.
        result = await session.execute(
            update(EventDelivery)
            .where(
                EventDelivery.id == delivery_id,
                EventDelivery.status == DELIVERY_PENDING,
                (EventDelivery.leased_until.is_(None)) | (EventDelivery.leased_until <= now),
            )
            .values(
                leased_until=leased_until,
                lease_owner=worker_id,
                attempts=EventDelivery.attempts + 1,
                round_attempts=EventDelivery.round_attempts + 1,
                last_attempt_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            taken.append(delivery_id)
    if not taken:
        return []
    rows = (
        await session.execute(
            select(EventDelivery, Event)
            .join(Event, Event.seq == EventDelivery.event_seq)
            .where(EventDelivery.id.in_(taken), EventDelivery.lease_owner == worker_id)
            .order_by(EventDelivery.event_seq)
            .execution_options(populate_existing=True)
        )
    ).all()
    claimed: list[Claimed] = []
    for delivery, event in rows:
        session.add(
            EventDeliveryAttempt(
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                worker=worker_id,
                started_at=now,
            )
        )
        claimed.append(
            Claimed(
                delivery_id=delivery.id,
                endpoint_id=delivery.endpoint_id,
                attempt=delivery.attempts,
                round_attempts=delivery.round_attempts,
                event_id=event.id,
                body=event_body(event),
            )
        )
    await session.flush()
    return claimed


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None
    error: str | None
    retry_after: float | None = None


async def send(
    http: httpx.AsyncClient, endpoint: Endpoint, item: Claimed, *, timeout_seconds: float
) -> Outcome:
    """POST one signed delivery. Never raises for transport failures."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "pbf-headless-events/1",
        SIGNATURE_HEADER: sign(item.body, endpoint.secrets),
        EVENT_ID_HEADER: item.event_id,
        ATTEMPT_HEADER: str(item.attempt),
    }
    try:
        # Streamed and never read: a receiver's (possibly huge) response body is ignored.
        async with http.stream(
            "POST",
            endpoint.url,
            content=item.body,
            headers=headers,
            timeout=timeout_seconds,
            extensions={"pbf_target": "webhook"},
        ) as response:
            status = response.status_code
            retry_after = retry_after_seconds(response)
    except httpx.TimeoutException:
        return Outcome(False, None, "timeout")
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"transport_error:{type(exc).__name__}")
    if 200 <= status < 300:
        return Outcome(True, status, None)
    return Outcome(False, status, f"http_{status}", retry_after)


def backoff_seconds(
    round_attempts: int,
    *,
    base: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random (never zero)."""
    delay = min(maximum, base * (2 ** max(0, round_attempts - 1)))
    rand = (rng or random).random()
    delay = delay / 2 + rand * delay / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, maximum))
    return delay


async def finish(
    session: AsyncSession,
    item: Claimed,
    outcome: Outcome,
    *,
    worker_id: str,
    now: datetime,
    max_attempts: int,
    backoff_base: float,
    backoff_max: float,
) -> str | None:
    """Record ``outcome``; returns the new status, or ``None`` when the lease was lost."""
    await session.execute(
        update(EventDeliveryAttempt)
        .where(
            EventDeliveryAttempt.delivery_id == item.delivery_id,
            EventDeliveryAttempt.attempt == item.attempt,
        )
        .values(finished_at=now, status_code=outcome.status_code, error=outcome.error)
        .execution_options(synchronize_session=False)
    )
    values: dict[str, Any] = {
        "leased_until": None,
        "lease_owner": None,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error,
        "updated_at": now,
    }
    if outcome.ok:
        status = DELIVERY_DELIVERED
        values.update(status=status, delivered_at=now, last_error=None)
    elif item.round_attempts >= max_attempts:
        status = DELIVERY_DEAD
        values.update(status=status)
    else:
        status = DELIVERY_PENDING
        delay = backoff_seconds(
            item.round_attempts,
            base=backoff_base,
            maximum=backoff_max,
            retry_after=outcome.retry_after,
        )
        values.update(status=status, next_attempt_at=now + timedelta(seconds=delay))
    result = await session.execute(
        update(EventDelivery)
        .where(
            EventDelivery.id == item.delivery_id,
            EventDelivery.lease_owner == worker_id,
            EventDelivery.attempts == item.attempt,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        log.warning(
            "delivery lease lost before its outcome was recorded",
            extra={"delivery_id": item.delivery_id, "attempt": item.attempt},
        )
        return None
    if status == DELIVERY_DEAD:
        log.warning(
            "event delivery is dead",
            extra={
                "delivery_id": item.delivery_id,
                "event_id": item.event_id,
                "endpoint_id": item.endpoint_id,
                "error": outcome.error,
            },
        )
    return status
