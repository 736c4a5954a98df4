"""Writing, listing and purging audit records (see :mod:`app.audit`)."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditRecord
from app.db import utcnow
from app.kit.pagination import decode_cursor, encode_cursor


@dataclass(frozen=True)
class Actor:
    """Who acts: an API key (with the request's client IP), the CLI, or the system."""

    type: str
    id: str | None = None
    name: str | None = None
    client_ip: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        return cls(type="cli", name="pbf-headless")


SYSTEM = Actor(type="system")
_actor: contextvars.ContextVar[Actor] = contextvars.ContextVar("pbf_audit_actor", default=SYSTEM)


def set_actor(actor: Actor) -> None:
    """Who the records of the current request / command are attributed to."""
    _actor.set(actor)


async def record(
    session: AsyncSession,
    *,
    action: str,
    target_type: str,
    target_id: str,
    end_user: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one record in the caller's transaction (added, flushed with it). Never
    secrets in ``details``: names of fields, states and ids only."""
    actor = _actor.get()
    session.add(
        AuditRecord(
            at=utcnow(),
            actor_type=actor.type,
            actor_id=actor.id,
            actor_name=actor.name,
            client_ip=actor.client_ip,
            action=action,
            target_type=target_type,
            target_id=target_id[:200],
            end_user_external_id=end_user,
            details=details or {},
        )
    )


def record_as_dict(row: AuditRecord) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "at": row.at.isoformat().replace("+00:00", "Z"),
        "actor": {
            "type": row.actor_type,
            "id": row.actor_id,
            "name": row.actor_name,
            "client_ip": row.client_ip,
        },
        "action": row.action,
        "target": {"type": row.target_type, "id": row.target_id},
        "end_user": row.end_user_external_id,
        "details": row.details or {},
    }


async def list_records(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    end_user: str | None = None,
    target_id: str | None = None,
) -> tuple[list[AuditRecord], str | None]:
    """Records oldest first (cursor-paginated like ``/v1/events``)."""
    after = decode_cursor(cursor, "seq", int)
    stmt = select(AuditRecord).order_by(AuditRecord.seq)
    if after is not None:
        stmt = stmt.where(AuditRecord.seq > after)
    if end_user is not None:
        stmt = stmt.where(AuditRecord.end_user_external_id == end_user)
    if target_id is not None:
        stmt = stmt.where(AuditRecord.target_id == target_id)
    rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    next_cursor = encode_cursor("seq", rows[limit - 1].seq) if len(rows) > limit else None
    return rows[:limit], next_cursor


async def iter_all(session: AsyncSession, *, batch: int = 1000) -> AsyncIterator[AuditRecord]:
    """Every record, oldest first (the export)."""
    cursor: str | None = None
    while True:
        rows, cursor = await list_records(session, cursor=cursor, limit=batch)
        for row in rows:
            yield row
        if cursor is None:
            return


async def purge_expired(
    session: AsyncSession, *, retention_days: int, now: datetime | None = None
) -> int:
    """The retention purge — the only delete path. Returns how many records went."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    result = await session.execute(
        delete(AuditRecord)
        .where(AuditRecord.at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
