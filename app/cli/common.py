"""What every ``pbf-headless`` command shares: settings, exit on error, a migrated database,
the app's lifespan without HTTP, the vault with a session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import audit
from app.config import Settings, load_settings, production_problems
from app.db import create_engine, create_sessionmaker
from app.main import create_app
from app.migrations_runner import pending_heads
from app.vault import Vault
from app.vault.errors import VaultError
from app.vault.startup import build_vault

T = TypeVar("T")

NOT_MIGRATED = "the database is not migrated; run 'pbf-headless migrate' first"


def cli_settings(sandbox: bool = False) -> Settings:
    """The service's settings (``--sandbox`` forces sandbox mode); invalid ones exit 2 with
    one line per setting."""
    overrides: dict[str, Any] = {"mode": "sandbox"} if sandbox else {}
    try:
        return load_settings(**overrides)
    except ValidationError as exc:
        # One line per invalid setting instead of a traceback (e.g. a bad branding colour).
        typer.echo("error: invalid settings:", err=True)
        for error in exc.errors():
            where = "__".join(str(part) for part in error["loc"]).upper()
            typer.echo(
                f"  - PBF_{where}: {error['msg']}" if where else f"  - {error['msg']}", err=True
            )
        raise typer.Exit(2) from None


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def fail_on_production_problems(settings: Settings) -> None:
    problems = production_problems(settings)
    if problems:
        fail("production mode cannot start: " + "; ".join(problems))


def prepare_data_dir(settings: Settings) -> None:
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)


async def _pending(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(pending_heads)
    finally:
        await engine.dispose()


def database_pending(settings: Settings) -> set[str]:
    """The migration heads the database still lacks (empty when migrated)."""
    return asyncio.run(_pending(settings.effective_database_url))


def run_with_session(settings: Settings, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``fn`` in one committed transaction on a migrated database."""

    url = settings.effective_database_url
    if url.startswith("sqlite") and ":memory:" not in url:
        if not Path(url.split("///", 1)[-1]).exists():
            fail(NOT_MIGRATED)

    async def go() -> T:
        if await _pending(url):
            fail(NOT_MIGRATED)
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await fn(session)
        finally:
            await engine.dispose()

    audit.set_actor(audit.Actor.cli())  # what the CLI changes is attributed to the CLI
    return asyncio.run(go())


def run_with_vault(
    settings: Settings, fn: Callable[[Vault, async_sessionmaker[AsyncSession]], Awaitable[T]]
) -> T:
    """Build the vault and a sessionmaker on a migrated database, run ``fn(vault, maker)``;
    a vault failure exits 2 with its message."""

    async def go() -> T:
        vault = await build_vault(settings)
        if await _pending(settings.effective_database_url):
            fail(NOT_MIGRATED)
        engine = create_engine(settings.effective_database_url)
        try:
            return await fn(vault, create_sessionmaker(engine))
        finally:
            await engine.dispose()

    audit.set_actor(audit.Actor.cli())
    try:
        return asyncio.run(go())
    except VaultError as exc:
        fail(exc.detail)


async def with_app(settings: Settings, fn: Callable[[FastAPI], Awaitable[T]]) -> T:
    """Run ``fn(app)`` inside the real app's lifespan (same wiring as the API, no HTTP).

    Never a second simulator: in sandbox mode this process reaches the sandbox server's."""
    app = create_app(settings, include_sandbox=False)
    async with app.router.lifespan_context(app):
        return await fn(app)
