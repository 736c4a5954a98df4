"""Database wiring: declarative base, engine, one session (= one transaction) per request.

Domain packages declare their tables in their own ``models.py`` on :class:`Base`; the list of
model modules lives in :data:`MODEL_MODULES` so that Alembic and the schema-drift test see
every table. Services ``flush()`` and never ``commit()``; :func:`session_dependency` commits
on success and rolls back on error.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Every module that declares tables. Add yours here (one line) when you add a models.py.
MODEL_MODULES: tuple[str, ...] = (
    "app.audit.models",
    "app.callers.models",
    "app.events.models",
    "app.end_users.models",
    "app.connections.models",
    "app.kit.models",
    "app.connect.models",
    "app.vault.models",
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def import_all_models() -> MetaData:
    for name in MODEL_MODULES:
        importlib.import_module(name)
    return Base.metadata


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware timestamps on every backend (SQLite stores naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque public id: ``<prefix>_<22 url-safe chars>`` (~128 bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def create_engine(
    url: str, *, pool_size: int = 5, max_overflow: int = 10, sqlite_cache_kib: int = 256
) -> AsyncEngine:
    """The async engine for ``url``. PostgreSQL: pings on checkout. SQLite: no ping, a fixed
    pool of ``pool_size + max_overflow`` connections, each with foreign keys on, WAL, a 30 s
    busy timeout and a page cache of ``sqlite_cache_kib`` KiB."""
    # PostgreSQL connections die with a server restart: each checkout pings first. A SQLite
    # connection is a file handle in this process that nothing outside can close; its ping
    # was a thread round trip per request (~12 % of a status read's CPU).
    sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"pool_pre_ping": not sqlite}
    if sqlite:
        kwargs["connect_args"] = {"timeout": 30}
        # A fixed pool: an overflow connection is closed on return and re-opened for the next
        # request (a thread start, a file open and three PRAGMAs each time) — under load
        # that churn cost more than the requests' own statements.
        kwargs.update(pool_size=pool_size + max_overflow, max_overflow=0)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=max_overflow)
    engine = create_async_engine(url, **kwargs)
    if sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA cache_size=-{int(sqlite_cache_kib)}")  # negative: KiB
            cur.close()

    return engine


def count_statements(engine: AsyncEngine, inc: Callable[[], None]) -> None:
    """Call ``inc()`` for every statement the engine executes (``pbf_db_statements_total``)."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(*_args: Any) -> None:
        inc()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def try_insert(session: AsyncSession, row: Base) -> bool:
    """Add and flush ``row`` in a savepoint; ``False`` (savepoint rolled back, the outer
    transaction intact) when the database refused it, e.g. a concurrent insert of the same
    unique key."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def session_scope(maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any error."""
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
