"""``pbf-headless migrate | serve | sandbox-counterparties | openapi | settings``.

Contract (ARCHITECTURE §8): ``serve [--sandbox] [--host H] [--port P]``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
import uvicorn
from fastapi import FastAPI

from app.cli.api_keys import ensure_sandbox_key_file
from app.cli.common import (
    NOT_MIGRATED,
    cli_settings,
    database_pending,
    fail,
    prepare_data_dir,
)
from app.config import load_settings, production_problems
from app.main import create_app
from app.migrations_runner import upgrade
from app.observability import configure_logging, uvicorn_log_config
from app.openapi_doc import render_openapi
from app.sandbox.counterparties import create_counterparties_app
from app.serve import local_base_url, run_server, sandbox_banner
from app.settings_doc import settings_markdown


def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "heads",
) -> None:
    """Apply database migrations (SQLite file under ./var/ by default, or DATABASE_URL)."""
    settings = cli_settings()
    prepare_data_dir(settings)
    upgrade(settings.effective_database_url, revision)
    typer.echo(f"database migrated to {revision}")


def serve(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Run in sandbox mode.")] = False,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes (uvicorn). Sandbox counterparts are per process, so a "
            "sandbox flow must stay on one connection to one worker — unless they run in "
            "their own process (sandbox-counterparties, PBF_SANDBOX__COUNTERPARTIES_URL).",
        ),
    ] = 1,
) -> None:
    """Serve the HTTP API (refuses an unmigrated database; sandbox mode migrates it).

    Sandbox mode also: links PBF_PUBLIC_BASE_URL to --host/--port unless it is set, logs one
    plain line per request unless PBF_LOG_JSON is set, and prints one banner with the URLs
    and a reusable sandbox API key (see 'api-keys ensure-sandbox')."""
    settings = cli_settings(sandbox)
    problems = production_problems(settings)
    if problems:
        typer.echo("error: production mode cannot start:", err=True)
        for p in problems:
            typer.echo(f"  - {p}", err=True)
        raise typer.Exit(2)
    prepare_data_dir(settings)
    if database_pending(settings):
        if settings.is_sandbox:
            upgrade(settings.effective_database_url)
        else:
            fail(NOT_MIGRATED)
    banner = None
    if settings.is_sandbox:
        if "public_base_url" not in settings.model_fields_set:
            settings.public_base_url = local_base_url(host, port)
        if "log_json" not in settings.model_fields_set:
            settings.log_json = False
        banner = sandbox_banner(settings, ensure_sandbox_key_file(settings))
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
    app = create_app(settings, freeze_heap=True)
    run_server(
        app,
        host=host,
        port=port,
        log_config=uvicorn_log_config(settings.log_level, settings.log_json),
        # One access line per request: ours (pbf.access: redacted, bounded, request id).
        access_log=False,
        banner=banner,
    )


def sandbox_counterparties(
    host: Annotated[
        str | None,
        typer.Option(help="Bind address (default: the host of PBF_SANDBOX__COUNTERPARTIES_URL)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="Port (default: the port of PBF_SANDBOX__COUNTERPARTIES_URL, or 8001)."),
    ] = None,
) -> None:
    """Serve the sandbox counterparts alone: the Fivetran simulator and the sandbox OAuth
    server (simulations), in their own process so they outlive the service.

    Point the service (and its worker, 'onboarding resume') at it with the same
    PBF_SANDBOX__COUNTERPARTIES_URL; PBF_PUBLIC_BASE_URL stays the service's address. The
    state persists in <data_dir>/sandbox-state.json unless PBF_SANDBOX__PERSIST=false."""
    settings = cli_settings(True)
    configured = settings.sandbox.counterparties_url
    parts = urlsplit(configured) if configured else None
    host = host or (parts.hostname if parts and parts.hostname else "127.0.0.1")
    port = port or (parts.port if parts and parts.port else 8001)
    if configured is None:
        settings.sandbox.counterparties_url = local_base_url(host, port)
    if "persist" not in settings.sandbox.model_fields_set:
        settings.sandbox.persist = True
    if "log_json" not in settings.model_fields_set:
        settings.log_json = False
    prepare_data_dir(settings)
    configure_logging(settings.log_level, json_lines=settings.log_json)
    base = settings.sandbox_base_url
    banner = "\n".join(
        [
            "",
            "pbf-headless sandbox counterparties are up (simulated Fivetran and OAuth provider)",
            f"  Fivetran   {base}/sandbox/fivetran",
            f"  OAuth      {base}/sandbox/oauth/<provider>",
            f"  service    {settings.public_base_url} (redirect URIs)",
            "",
            f"  point the service at them: export PBF_SANDBOX__COUNTERPARTIES_URL={base}",
            "",
        ]
    )
    run_server(
        create_counterparties_app(settings),
        host=host,
        port=port,
        log_config=uvicorn_log_config(settings.log_level, settings.log_json),
        access_log=False,
        banner=banner,
    )


def worker_app() -> FastAPI:
    """App factory of one ``serve --workers N`` process (settings from the environment)."""
    settings = load_settings()
    configure_logging(settings.log_level, json_lines=settings.log_json)
    return create_app(settings, freeze_heap=True)


def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default stdout).")
    ] = None,
) -> None:
    """Write the OpenAPI document (the committed copy is openapi/openapi.json)."""
    text = render_openapi()
    if output is None:
        sys.stdout.write(text)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}")


def settings_table() -> None:
    """Print every setting (env var, type, default, meaning) as a Markdown table."""
    sys.stdout.write(settings_markdown())
