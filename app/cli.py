"""``pbf-headless`` command line: serve, migrate, api-keys, openapi (and domain commands).

Contract (ARCHITECTURE §8): ``serve [--sandbox] [--host H] [--port P]``;
``api-keys create --name N [--scope S]…`` prints the new key alone on the last line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, load_settings, production_problems
from app.db import create_engine, create_sessionmaker
from app.events.cli import fivetran_cli, worker_command
from app.onboarding.cli import onboarding_cli
from app.providers.cli import providers_cli
from app.vault.cli import keys_cli

T = TypeVar("T")

cli = typer.Typer(
    help="pbf-headless: headless Powered-by-Fivetran onboarding service.",
    no_args_is_help=True,
    add_completion=False,
)
api_keys_cli = typer.Typer(help="Manage caller API keys.", no_args_is_help=True)
cli.add_typer(api_keys_cli, name="api-keys")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(fivetran_cli, name="fivetran")
cli.command("worker")(worker_command)
cli.add_typer(providers_cli, name="providers")
cli.add_typer(onboarding_cli, name="onboarding")


def _settings(sandbox: bool = False) -> Settings:
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


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def run_with_session(settings: Settings, fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``fn`` in one committed transaction on a migrated database."""

    url = settings.effective_database_url
    if url.startswith("sqlite") and ":memory:" not in url:
        if not Path(url.split("///", 1)[-1]).exists():
            _fail("the database is not migrated; run 'pbf-headless migrate' first")

    async def _go() -> T:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                from app.migrations_runner import pending_heads

                missing = await conn.run_sync(pending_heads)
            if missing:
                _fail("the database is not migrated; run 'pbf-headless migrate' first")
            maker = create_sessionmaker(engine)
            async with maker() as session, session.begin():
                return await fn(session)
        finally:
            await engine.dispose()

    return asyncio.run(_go())


def _prepare_data_dir(settings: Settings) -> None:
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)


@cli.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "heads",
) -> None:
    """Apply database migrations (SQLite file under ./var/ by default, or DATABASE_URL)."""
    from app.migrations_runner import upgrade

    settings = _settings()
    _prepare_data_dir(settings)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database migrated to {revision}")


def _database_pending(settings: Settings) -> set[str]:
    async def _check() -> set[str]:
        from app.migrations_runner import pending_heads

        engine = create_engine(settings.effective_database_url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(pending_heads)
        finally:
            await engine.dispose()

    return asyncio.run(_check())


@cli.command()
def serve(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run in sandbox mode.")] = False,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes (uvicorn). Sandbox counterparts are per process, so a "
            "sandbox flow must stay on one connection to one worker.",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (refuses an unmigrated database; sandbox mode migrates it)."""
    import uvicorn

    from app.main import create_app
    from app.observability import configure_logging, uvicorn_log_config

    settings = _settings(sandbox)
    problems = production_problems(settings)
    if problems:
        typer.echo("error: production mode cannot start:", err=True)
        for p in problems:
            typer.echo(f"  - {p}", err=True)
        raise typer.Exit(2)
    _prepare_data_dir(settings)
    if _database_pending(settings):
        if settings.is_sandbox:
            from app.migrations_runner import upgrade

            upgrade(settings.effective_database_url)
        else:
            _fail("the database is not migrated; run 'pbf-headless migrate' first")
    if (
        settings.is_sandbox
        and "register_webhook_on_startup" not in settings.events.model_fields_set
    ):
        # The simulator lives in this process: register its webhook so syncs and breakages
        # reach us the way Fivetran's would.
        settings.events.register_webhook_on_startup = True
    if settings.is_sandbox and "persist" not in settings.sandbox.model_fields_set:
        # The simulator's groups, connections and tokens outlive a restart of the server.
        settings.sandbox.persist = True
    configure_logging(settings.log_level, json_lines=settings.log_json)
    if workers > 1:
        # Each worker process builds its own app from the environment: hand it what the
        # options above decided.
        os.environ["PBF_MODE"] = settings.mode
        os.environ["PBF_EVENTS__REGISTER_WEBHOOK_ON_STARTUP"] = str(
            settings.events.register_webhook_on_startup
        ).lower()
        uvicorn.run(
            "app.cli:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_config=uvicorn_log_config(settings.log_level, settings.log_json),
            proxy_headers=False,
            access_log=False,
        )
        return
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=uvicorn_log_config(settings.log_level, settings.log_json),
        proxy_headers=False,
        access_log=False,  # RequestContextMiddleware writes the one access line (pbf.access)
    )


def worker_app() -> Any:
    """App factory of one ``serve --workers N`` process (settings from the environment)."""
    from app.main import create_app
    from app.observability import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings)


@api_keys_cli.command("create")
def api_keys_create(
    name: Annotated[str, typer.Option(help="Who uses this key.")],
    scope: Annotated[
        list[str] | None, typer.Option(help="read | write | admin (repeatable).")
    ] = None,
    end_user_prefix: Annotated[
        str | None,
        typer.Option(help="Restrict the key to end-users whose external id starts with this."),
    ] = None,
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    from app.callers.service import create_api_key
    from app.errors import AppError

    settings = _settings()

    async def _create(session: AsyncSession) -> tuple[Any, str]:
        return await create_api_key(
            session, name=name, scopes=scope or ["read", "write"], end_user_prefix=end_user_prefix
        )

    try:
        row, key = run_with_session(settings, _create)
    except AppError as exc:
        _fail(exc.detail)
        return
    typer.echo(
        f"created API key {row.id} ({row.name}) scopes={','.join(row.scopes)}"
        + (f" end_user_prefix={row.end_user_prefix}" if row.end_user_prefix else "")
    )
    typer.echo("store it now; it is not shown again:")
    typer.echo(key)


@api_keys_cli.command("list")
def api_keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List API keys (never their secrets)."""
    from app.callers.service import list_api_keys

    rows = run_with_session(_settings(), list_api_keys)
    items: list[dict[str, Any]] = [
        {
            "id": r.id,
            "name": r.name,
            "scopes": r.scopes,
            "end_user_prefix": r.end_user_prefix,
            "created_at": r.created_at.isoformat(),
            "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for i in items:
        typer.echo(
            f"{i['id']}  {i['name']:<24} {','.join(i['scopes'] or []):<16} "
            f"{'REVOKED' if i['revoked'] else 'active'}"
        )


@api_keys_cli.command("revoke")
def api_keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (pbf_<id>_…).")]) -> None:
    """Revoke an API key; it stops working immediately."""
    from app.callers.service import revoke_api_key
    from app.errors import AppError

    if key_id.startswith("pbf_"):
        key_id = key_id.split("_")[1]

    async def _revoke(session: AsyncSession) -> Any:
        return await revoke_api_key(session, key_id)

    try:
        run_with_session(_settings(), _revoke)
    except AppError as exc:
        _fail(exc.detail)
    typer.echo(f"revoked API key {key_id}")


@cli.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
) -> None:
    """Write the OpenAPI document (the committed copy is openapi/openapi.json)."""
    from app.openapi_doc import render_openapi

    text = render_openapi()
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}")


@cli.command("settings")
def settings_table() -> None:
    """Print every setting (env var, type, default, meaning) as a Markdown table."""
    from app.settings_doc import settings_markdown

    sys.stdout.write(settings_markdown())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
