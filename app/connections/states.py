"""Connection states and transitions (ARCHITECTURE §5).

``pending`` (session started) → ``authorizing`` → [``needs_configuration`` (a choice after
consent: account pickers)] → ``creating`` → ``connected`` |
``setup_failed``; a Connect Card connection is ``creating`` (at Fivetran, without auth) →
``authorizing`` (the end-user is at Fivetran's card) → ``creating`` → ``connected`` |
``setup_failed``; ``connected`` → ``broken`` (Fivetran reports it) → ``connected`` (after
re-authorization); any → ``paused`` / ``deleted``. Every change is stored in
``connection_transitions`` with its time and reason and emits the matching outbound event
through the outbox (same transaction).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.models import Connection, ConnectionTransition
from app.db import utcnow
from app.end_users.models import EndUser
from app.errors import Conflict
from app.events.outbox import emit

PENDING = "pending"
AUTHORIZING = "authorizing"
NEEDS_CONFIGURATION = "needs_configuration"
CREATING = "creating"
CONNECTED = "connected"
SETUP_FAILED = "setup_failed"
BROKEN = "broken"
PAUSED = "paused"
DELETED = "deleted"

STATES = (
    PENDING,
    AUTHORIZING,
    NEEDS_CONFIGURATION,
    CREATING,
    CONNECTED,
    SETUP_FAILED,
    BROKEN,
    PAUSED,
    DELETED,
)

#: Allowed moves (``paused`` and ``deleted`` are reachable from every live state).
ALLOWED: dict[str | None, frozenset[str]] = {
    None: frozenset({PENDING, CREATING}),
    PENDING: frozenset({AUTHORIZING, CREATING, SETUP_FAILED}),
    AUTHORIZING: frozenset({PENDING, NEEDS_CONFIGURATION, CREATING, SETUP_FAILED}),
    NEEDS_CONFIGURATION: frozenset({CREATING, SETUP_FAILED}),
    CREATING: frozenset({AUTHORIZING, CONNECTED, SETUP_FAILED}),
    CONNECTED: frozenset({BROKEN, SETUP_FAILED}),
    SETUP_FAILED: frozenset({AUTHORIZING, CREATING, CONNECTED, BROKEN}),
    BROKEN: frozenset({CONNECTED, SETUP_FAILED}),
    PAUSED: frozenset({CONNECTED, BROKEN, SETUP_FAILED}),
    DELETED: frozenset(),
}

#: Outbound event per target state (states without an entry emit nothing).
EVENT_FOR_STATE: dict[str, str] = {
    NEEDS_CONFIGURATION: "connection.needs_configuration",
    CONNECTED: "connection.connected",
    SETUP_FAILED: "connection.setup_failed",
    BROKEN: "connection.broken",
    PAUSED: "connection.paused",
    DELETED: "connection.deleted",
}


def can_transition(current: str | None, new_state: str) -> bool:
    if current == DELETED:
        return False
    if new_state in (PAUSED, DELETED) and current is not None:
        return True
    return new_state in ALLOWED.get(current, frozenset())


async def transition(
    session: AsyncSession,
    connection: Connection,
    new_state: str,
    *,
    reason: str,
    emit: bool = True,
) -> bool:
    """Move ``connection`` to ``new_state``; record it and emit its event (flush only).

    The current state is re-read from the database under a row lock first, so concurrent
    writers (webhooks, reconciliation, a resumed create) never record a move twice.
    Returns False (and records nothing) when the connection is already in ``new_state``.
    An impossible move raises ``Conflict`` (``invalid_transition``).
    """
    current = connection.state
    if current is not None and connection.id is not None:
        # Re-read the committed state under a row lock (PostgreSQL): a webhook, the
        # reconciliation or a concurrent resume may have moved it since we loaded it.
        await session.flush()
        await session.refresh(connection, attribute_names=["state"], with_for_update=True)
        current = connection.state
    if current == new_state:
        if reason and connection.state_reason != reason[:200]:
            connection.state_reason = reason[:200]
            connection.updated_at = utcnow()
        return False
    if new_state not in STATES:
        raise ValueError(f"unknown connection state {new_state!r}")
    if not can_transition(current, new_state):
        raise Conflict(
            f"A connection cannot go from '{current}' to '{new_state}'",
            code="invalid_transition",
        )
    now = utcnow()
    connection.state = new_state
    connection.state_reason = reason[:200]
    connection.updated_at = now
    if new_state == PAUSED:
        connection.paused = True
    elif new_state == DELETED:
        connection.deleted_at = now
    session.add(
        ConnectionTransition(
            connection_id=connection.id,
            from_state=current,
            to_state=new_state,
            reason=reason[:200],
            created_at=now,
        )
    )
    await session.flush()
    if emit:
        kind = EVENT_FOR_STATE.get(new_state)
        if new_state == CONNECTED and current == PAUSED:
            kind = "connection.resumed"
        if kind is not None:
            await _emit(session, connection, kind, from_state=current)
    return True


async def resume_target(session: AsyncSession, connection: Connection) -> str:
    """The state a ``paused`` connection returns to when resumed.

    A connection that never passed its setup tests before it was paused (``setup_failed``,
    or still ``creating``) goes back to ``setup_failed``: only passing tests lead to
    ``connected`` (§5). Otherwise ``broken`` or ``connected`` as Fivetran last reported."""
    before = await session.scalar(
        select(ConnectionTransition.from_state)
        .where(
            ConnectionTransition.connection_id == connection.id,
            ConnectionTransition.to_state == PAUSED,
        )
        .order_by(ConnectionTransition.created_at.desc(), ConnectionTransition.id.desc())
        .limit(1)
    )
    if before in (PENDING, AUTHORIZING, NEEDS_CONFIGURATION, CREATING, SETUP_FAILED):
        return SETUP_FAILED
    return BROKEN if connection.setup_state == "broken" else CONNECTED


async def _emit(
    session: AsyncSession, connection: Connection, kind: str, *, from_state: str | None
) -> None:
    external_id = await session.scalar(
        select(EndUser.external_id).where(EndUser.id == connection.end_user_id)
    )
    await emit(
        session,
        kind=kind,
        data={
            "connection_id": connection.id,
            "service": connection.service,
            "state": connection.state,
            "previous_state": from_state,
            "reason": connection.state_reason,
            "fivetran_connection_id": connection.fivetran_connection_id,
        },
        connection_id=connection.id,
        end_user_external_id=external_id,
    )


async def emit_event(session: AsyncSession, connection: Connection, kind: str) -> None:
    """Emit a lifecycle event that is not a state change (``connection.created``)."""
    await _emit(session, connection, kind, from_state=connection.state)
