"""Migrations apply from empty, match the models exactly, and downgrade cleanly; the engine's
SQLite connections get their configured pragmas."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from app.config import Settings
from app.db import create_engine, import_all_models
from app.main import create_app
from app.migrations_runner import downgrade, head_revisions, upgrade


async def _inspect(url: str):
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def work(sync_conn):
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                diff = compare_metadata(ctx, import_all_models())
                tables = set(inspect(sync_conn).get_table_names())
                return diff, tables, set(ctx.get_current_heads())

            return await conn.run_sync(work)
    finally:
        await engine.dispose()


def test_upgrade_matches_models_and_downgrades(database_url):
    # database_url is already migrated to head (conftest template): go down, then up again.
    downgrade(database_url, "base")
    _, tables, heads = asyncio.run(_inspect(database_url))
    assert tables <= {"alembic_version"}, f"left behind after downgrade: {tables}"
    assert heads == set()
    upgrade(database_url)
    diff, tables, heads = asyncio.run(_inspect(database_url))
    assert heads == head_revisions()
    assert diff == [], f"models and migrations differ: {diff}"
    assert {t.name for t in import_all_models().sorted_tables} <= tables


async def test_sqlite_connections_keep_the_configured_page_cache(
    settings_factory: Callable[..., Settings],
) -> None:
    """Every pooled SQLite connection caches ``db_sqlite_cache_kib`` KiB, not SQLite's 2 MiB
    (15 connections each caching the same file were ~25 MB of a worker's memory)."""
    settings = settings_factory(db_sqlite_cache_kib=96)
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("a SQLite pragma")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.engine.connect() as conn:
            pragma = await conn.exec_driver_sql("PRAGMA cache_size")
            assert pragma.scalar_one() == -96


async def test_sqlite_checkouts_do_not_ping(
    settings_factory: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SQLite connection is a file handle nothing outside can close: a checkout does not
    ping it first (a ping was a thread round trip per request)."""
    settings = settings_factory()
    if not settings.effective_database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL pings on checkout (its connections die with a restart)")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        pings: list[object] = []
        real_ping = engine.dialect.do_ping
        monkeypatch.setattr(engine.dialect, "do_ping", lambda c: pings.append(c) or real_ping(c))
        for _ in range(3):
            async with app.state.sessionmaker() as session:
                assert (await session.execute(text("SELECT 42"))).scalar_one() == 42
    assert pings == []
