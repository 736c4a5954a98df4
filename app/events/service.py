"""Reading the event feed, replaying events, listing endpoints (services of the router)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, Exists, and_, exists, func, not_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import Caller, end_user_prefix_clause
from app.db import utcnow
from app.errors import InvalidInput, NotFound
from app.events.delivery import FANOUT_LOCK_KEY, is_postgres, new_delivery
from app.events.kinds import EVENT_KINDS
from app.events.models import (
    DELIVERY_DEAD,
    DELIVERY_DELIVERED,
    DELIVERY_PENDING,
    Event,
    EventDelivery,
)
from app.events.receivers import Endpoint
from app.events.schemas import DeliveryOut, EventEndpointOut, EventOut
from app.kit.pagination import decode_cursor, encode_cursor

STATUSES = ("pending", "delivered", "dead", "skipped")


def _has_delivery(*conditions: ColumnElement[bool]) -> Exists:
    return exists().where(EventDelivery.event_seq == Event.seq, *conditions)


def _status_filter(status: str) -> ColumnElement[bool]:
    pending = Event.fanned_out_at.is_(None) | _has_delivery(
        EventDelivery.status == DELIVERY_PENDING
    )
    dead = _has_delivery(EventDelivery.status == DELIVERY_DEAD)
    if status == "pending":
        return pending
    if status == "dead":
        return and_(not_(pending), dead)
    if status == "delivered":
        return and_(
            not_(pending), not_(dead), _has_delivery(EventDelivery.status == DELIVERY_DELIVERED)
        )
    return and_(Event.fanned_out_at.is_not(None), not_(_has_delivery()))


def _visible(caller: Caller) -> ColumnElement[bool] | None:
    if caller.end_user_prefix is None:
        return None
    return end_user_prefix_clause(Event.end_user_external_id, caller.end_user_prefix)


def event_status(event: Event, deliveries: Sequence[EventDelivery]) -> str:
    statuses = {d.status for d in deliveries}
    if event.fanned_out_at is None or DELIVERY_PENDING in statuses:
        return "pending"
    if DELIVERY_DEAD in statuses:
        return "dead"
    if DELIVERY_DELIVERED in statuses:
        return "delivered"
    return "skipped"


def to_out(event: Event, deliveries: Sequence[EventDelivery]) -> EventOut:
    return EventOut(
        id=event.id,
        type=event.kind,
        created_at=event.created_at,
        connection_id=event.connection_id,
        end_user=event.end_user_external_id,
        data=event.data,
        status=event_status(event, deliveries),  # type: ignore[arg-type]
        deliveries=[
            DeliveryOut(
                endpoint_id=d.endpoint_id,
                status=d.status,  # type: ignore[arg-type]
                attempts=d.attempts,
                next_attempt_at=d.next_attempt_at if d.status == DELIVERY_PENDING else None,
                last_attempt_at=d.last_attempt_at,
                last_status_code=d.last_status_code,
                last_error=d.last_error,
                delivered_at=d.delivered_at,
            )
            for d in sorted(deliveries, key=lambda d: d.endpoint_id)
        ],
    )


async def _deliveries_of(session: AsyncSession, seqs: list[int]) -> dict[int, list[EventDelivery]]:
    out: dict[int, list[EventDelivery]] = {s: [] for s in seqs}
    if not seqs:
        return out
    rows = await session.scalars(
        select(EventDelivery)
        .where(EventDelivery.event_seq.in_(seqs))
        .execution_options(populate_existing=True)
    )
    for d in rows:
        out[d.event_seq].append(d)
    return out


async def list_events(
    session: AsyncSession,
    *,
    caller: Caller,
    connection_id: str | None = None,
    end_user: str | None = None,
    kind: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[EventOut], str | None]:
    """Events in emission order (oldest first), ``cursor`` = after the last seen event."""
    if kind is not None and kind not in EVENT_KINDS:
        raise InvalidInput(f"Unknown event type '{kind}'", field="type")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"Unknown status '{status}'", field="status")
    stmt = select(Event).order_by(Event.seq)
    visible = _visible(caller)
    if visible is not None:
        stmt = stmt.where(visible)
    if end_user is not None:
        if not caller.can_access_end_user(end_user):
            return [], None
        stmt = stmt.where(Event.end_user_external_id == end_user)
    if connection_id is not None:
        stmt = stmt.where(Event.connection_id == connection_id)
    if kind is not None:
        stmt = stmt.where(Event.kind == kind)
    if status is not None:
        stmt = stmt.where(_status_filter(status))
    after = decode_cursor(cursor, "seq", int)
    if after is not None:
        stmt = stmt.where(Event.seq > after)
    rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    page = rows[:limit]
    deliveries = await _deliveries_of(session, [e.seq for e in page])
    next_cursor = encode_cursor("seq", page[-1].seq) if len(rows) > limit else None
    return [to_out(e, deliveries[e.seq]) for e in page], next_cursor


async def _visible_event(session: AsyncSession, caller: Caller, event_id: str) -> Event:
    stmt = select(Event).where(Event.id == event_id)
    visible = _visible(caller)
    if visible is not None:
        stmt = stmt.where(visible)
    event = await session.scalar(stmt)
    if event is None:
        raise NotFound(f"Event '{event_id}' not found", code="event_not_found")
    return event


async def get_event(session: AsyncSession, *, caller: Caller, event_id: str) -> EventOut:
    event = await _visible_event(session, caller, event_id)
    deliveries = await _deliveries_of(session, [event.seq])
    return to_out(event, deliveries[event.seq])


async def redeliver(
    session: AsyncSession,
    *,
    caller: Caller,
    endpoints: dict[str, Endpoint],
    event_id: str,
    endpoint_id: str | None = None,
) -> EventOut:
    """Queue the event again for its endpoints (or one): attempts restart, order is kept.

    Endpoints subscribed to the event's type that have no delivery row yet (added to the
    configuration after the event) get one. The receiver sees the same ``PBF-Event-Id``.
    """
    event = await _visible_event(session, caller, event_id)
    if endpoint_id is not None and endpoint_id not in endpoints:
        raise InvalidInput(f"Unknown endpoint '{endpoint_id}'", field="endpoint_id")
    targets = [
        e
        for e in endpoints.values()
        if (endpoint_id is None or e.id == endpoint_id) and e.wants(event.kind)
    ]
    if not targets:
        raise InvalidInput(
            f"No configured endpoint receives '{event.kind}' events", field="endpoint_id"
        )
    now = utcnow()
    if event.fanned_out_at is None and is_postgres(session):
        # Serialize with the worker's fan-out step, then look again.
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FANOUT_LOCK_KEY})
        await session.refresh(event)
    existing = {
        d.endpoint_id
        for d in (
            await session.scalars(select(EventDelivery).where(EventDelivery.event_seq == event.seq))
        ).all()
    }
    for endpoint in targets:
        if endpoint.id in existing:
            await session.execute(
                update(EventDelivery)
                .where(
                    EventDelivery.event_seq == event.seq,
                    EventDelivery.endpoint_id == endpoint.id,
                )
                .values(
                    status=DELIVERY_PENDING,
                    round_attempts=0,
                    next_attempt_at=now,
                    delivered_at=None,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        else:
            session.add(new_delivery(event, endpoint.id, now=now))
    if event.fanned_out_at is None:
        # Not fanned out yet: this is its fan-out, so every endpoint that wants it gets a
        # delivery (not only the redelivered one), or the others would never receive it.
        chosen = {e.id for e in targets}
        for endpoint in endpoints.values():
            if endpoint.wants(event.kind) and endpoint.id not in existing | chosen:
                session.add(new_delivery(event, endpoint.id, now=now))
        event.fanned_out_at = now
    await session.flush()
    deliveries = await _deliveries_of(session, [event.seq])
    return to_out(event, deliveries[event.seq])


async def list_endpoints(
    session: AsyncSession, endpoints: dict[str, Endpoint]
) -> list[EventEndpointOut]:
    counts: dict[tuple[str, str], int] = {}
    rows = await session.execute(
        select(EventDelivery.endpoint_id, EventDelivery.status, func.count())
        .where(EventDelivery.status.in_((DELIVERY_PENDING, DELIVERY_DEAD)))
        .group_by(EventDelivery.endpoint_id, EventDelivery.status)
    )
    for endpoint_id, status, n in rows.all():
        counts[(endpoint_id, status)] = int(n)
    return [
        EventEndpointOut(
            id=e.id,
            url=e.url,
            events=sorted(e.events) if e.events is not None else None,
            secrets_configured=len(e.secrets),
            pending=counts.get((e.id, DELIVERY_PENDING), 0),
            dead=counts.get((e.id, DELIVERY_DEAD), 0),
        )
        for e in endpoints.values()
    ]
