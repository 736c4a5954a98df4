"""Shared test fixtures: a real, migrated database per test and the real app over ASGI.

Backend: ``PBF_TEST_DB=sqlite`` (default) or ``postgresql``. The schema is built once per
session by running the Alembic migrations into a template; every test then gets its own copy
(a copied SQLite file, or ``CREATE DATABASE … TEMPLATE`` on PostgreSQL), so tests may commit,
run concurrently inside themselves, and never see each other's rows.

Fixtures per domain live in their own ``tests/<domain>/conftest.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings

TEST_DB = os.environ.get("PBF_TEST_DB", "sqlite")
PG_ADMIN_DSN = os.environ.get("PBF_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BASE_URL = "http://127.0.0.1:8000"
_ENV_PREFIXES = ("PBF_", "DATABASE_URL", "REDIS_URL", "AWS_")


def pytest_report_header(config: pytest.Config) -> str:
    return f"pbf-headless test database backend: {TEST_DB}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's environment."""
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES) and not key.startswith("PBF_TEST_"):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Leave the logging tree as the test found it.

    ``configure_logging`` (called by the app factory, the CLI and some tests) installs a
    redacting root handler and may lower the root level to DEBUG; left in place, every later
    SQLAlchemy/aiosqlite debug record is formatted and redacted, which once cost three
    quarters of the suite's time.
    """
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers), list(root.filters))
    saved = {
        name: (lg.level, list(lg.handlers), list(lg.filters), lg.propagate, lg.disabled)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    yield
    root.setLevel(saved_root[0])
    root.handlers[:] = saved_root[1]
    root.filters[:] = saved_root[2]
    for name, lg in list(manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in saved:
            lg.level, handlers, filters, lg.propagate, lg.disabled = saved[name]
            lg.handlers[:] = handlers
            lg.filters[:] = filters
        else:
            lg.setLevel(logging.NOTSET)
            lg.handlers.clear()
            lg.filters.clear()
    manager._clear_cache()  # type: ignore[attr-defined]


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0]
    return f"{base}/{dbname}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(*statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per session; returns its URL (or SQLite path)."""
    from app.migrations_runner import upgrade

    if TEST_DB == "sqlite":
        path = tmp_path_factory.mktemp("tmpl") / "template.db"
        upgrade(f"sqlite+aiosqlite:///{path}")
        yield str(path)
        return
    name = f"pbf_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"', f'CREATE DATABASE "{name}"'))
    upgrade(_pg_url(name))
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_reset(name: str, template: str) -> None:
    """Empty the worker's database for the next test; rebuild it from the template when a test
    left it anywhere but at the template's schema (a failed downgrade, say)."""
    import asyncpg

    conn = await asyncpg.connect(_pg_url(name).replace("+asyncpg", ""))
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        heads = await conn.fetch("SELECT version_num FROM alembic_version")
        tables = [
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ]
        expected = _PG_SCHEMA.get(template)
        if expected is None or expected != ([r["version_num"] for r in heads], sorted(tables)):
            raise RuntimeError("schema changed")
        # DELETE, not TRUNCATE: the tables hold a handful of rows, and TRUNCATE swaps every
        # table's and index's files (slow under load). Foreign-key triggers are skipped
        # (replica role) since every table is emptied; sequences restart as in a new copy.
        sequences = [
            r["relname"]
            for r in await conn.fetch(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'S' AND n.nspname = 'public'"
            )
        ]
        statements = [f'DELETE FROM "{t}"' for t in tables]
        statements += [f'ALTER SEQUENCE "{q}" RESTART' for q in sequences]
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(";".join(statements))
    except (RuntimeError, asyncpg.PostgresError):
        await conn.close()
        await _pg_admin(
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
            f'CREATE DATABASE "{name}" TEMPLATE "{template}"',
            f'ALTER DATABASE "{name}" SET synchronous_commit = off',
        )
        return
    await conn.close()


#: template name → (alembic heads, sorted table names), read once from the template.
_PG_SCHEMA: dict[str, tuple[list[str], list[str]]] = {}


async def _pg_schema(name: str) -> tuple[list[str], list[str]]:
    import asyncpg

    conn = await asyncpg.connect(_pg_url(name).replace("+asyncpg", ""))
    try:
        heads = [
            r["version_num"] for r in await conn.fetch("SELECT version_num FROM alembic_version")
        ]
        tables = sorted(
            r["tablename"]
            for r in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        )
    finally:
        await conn.close()
    return heads, tables


@pytest.fixture(scope="session")
def _pg_worker_db(template_db: str) -> Iterator[str]:
    """PostgreSQL: one database per test process, copied from the template once.

    ``CREATE DATABASE … TEMPLATE`` plus ``DROP`` costs 1–2 s each on a busy 2-core machine
    (it syncs the new files); emptying the tables with one ``TRUNCATE`` between tests costs a
    few milliseconds and gives each test the same empty, migrated database.
    """
    name = f"pbf_w_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _PG_SCHEMA[template_db] = asyncio.run(_pg_schema(template_db))
    asyncio.run(
        _pg_admin(
            f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"',
            # A test database: commits need not wait for the disk.
            f'ALTER DATABASE "{name}" SET synchronous_commit = off',
        )
    )
    yield name
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(template_db: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database for this test: a copied SQLite file, or this process's
    PostgreSQL database emptied after the previous test."""
    if TEST_DB == "sqlite":
        target = tmp_path / "pbf.db"
        shutil.copyfile(template_db, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    name = request.getfixturevalue("_pg_worker_db")
    yield _pg_url(name)
    asyncio.run(_pg_reset(name, template_db))


def fresh_database(template_db: str, directory: Path) -> Iterator[str]:
    """A database of its own for a wider scope (a module's shared app), dropped afterwards."""
    if TEST_DB == "sqlite":
        target = directory / "pbf.db"
        shutil.copyfile(template_db, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    name = f"pbf_m_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings_factory(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Build sandbox settings on this test's database; keyword overrides win."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "mode": "sandbox",
            "data_dir": tmp_path / "var",
            "database_url": database_url,
            "public_base_url": BASE_URL,
            "log_json": True,
            # Syncs end through the control API unless a test asks for the sync clock.
            "sandbox": {"sync_seconds": 0},
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def app_factory() -> Iterator[Callable[..., FastAPI]]:
    from app.main import create_app

    yield create_app


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The real app with its lifespan running (engine, http client, vault, workers)."""
    from app.main import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


@pytest.fixture
async def make_app_client(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]]:
    """``await make_app_client(**settings)``: a running app (settings of the test) and a
    client on it with an admin key; both closed at the end of the test."""
    from contextlib import AsyncExitStack

    from app.callers.service import create_api_key
    from app.main import create_app

    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> tuple[FastAPI, httpx.AsyncClient]:
            application = create_app(settings_factory(**overrides))
            await stack.enter_async_context(application.router.lifespan_context(application))
            async with application.state.sessionmaker() as s, s.begin():
                _, key = await create_api_key(s, name="t", scopes=["admin"])
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=application),
                    base_url=BASE_URL,
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            return application, client

        yield make


@pytest.fixture
def make_api_key(app: FastAPI) -> Callable[..., Awaitable[str]]:
    """Create an API key in the app's database; returns the full key."""
    from app.callers.service import create_api_key

    async def make(
        scopes: list[str] | None = None, end_user_prefix: str | None = None, name: str = "test"
    ) -> str:
        async with app.state.sessionmaker() as session, session.begin():
            _, key = await create_api_key(
                session,
                name=name,
                scopes=scopes or ["read", "write"],
                end_user_prefix=end_user_prefix,
            )
        return key

    return make


@pytest.fixture
async def auth_headers(make_api_key: Callable[..., Awaitable[str]]) -> dict[str, str]:
    """Headers of an admin key (read + write + admin)."""
    return {"Authorization": f"Bearer {await make_api_key(['admin'])}"}
