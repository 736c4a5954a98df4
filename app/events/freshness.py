"""When we last learned each connection's state from Fivetran (drives reconciliation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import ConnectionFreshness

#: ``last_seen_at`` of a connection we never managed to read (stays a reconcile candidate).
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


async def mark_fresh(
    session: AsyncSession,
    connection_id: str,
    *,
    now: datetime,
    source: str,
    reconciled: bool = False,
    error: str | None = None,
) -> None:
    """Upsert the freshness row (race-free on both backends: INSERT … ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
    values: dict[str, Any] = {
        "connection_id": connection_id,
        "source": source,
        "last_error": error[:200] if error else None,
    }
    if error is None:
        values["last_seen_at"] = now
    if reconciled:
        values["last_reconciled_at"] = now
    stmt = insert(ConnectionFreshness).values(
        **values, **({} if "last_seen_at" in values else {"last_seen_at": NEVER})
    )
    update_cols = {k: stmt.excluded[k] for k in values if k != "connection_id"}
    stmt = stmt.on_conflict_do_update(index_elements=["connection_id"], set_=update_cols)
    await session.execute(stmt)
