"""``pbf-headless worker``: the event delivery and reconciliation loops, out of the API.

It runs the real app's lifespan (engine, http client, vault, Fivetran client…) without
serving HTTP, so the worker and the API share exactly the same wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer
from fastapi import FastAPI

from app.cli.common import (
    NOT_MIGRATED,
    cli_settings,
    database_pending,
    fail,
    fail_on_production_problems,
    with_app,
)
from app.observability import configure_logging
from app.sandbox.remote import sandbox_server_reachable, unreachable_message


def worker_command(
    once: Annotated[
        bool,
        typer.Option("--once", help="Deliver what is due, reconcile once, and exit (cron)."),
    ] = False,
) -> None:
    """Run the event delivery and reconciliation loops (scale-out; SIGTERM stops cleanly)."""
    settings = cli_settings()
    settings = settings.model_copy(
        update={
            "events": settings.events.model_copy(
                update={"run_worker_in_api": False, "register_webhook_on_startup": False}
            )
        }
    )
    fail_on_production_problems(settings)
    if database_pending(settings):
        fail(NOT_MIGRATED)
    configure_logging(settings.log_level, json_lines=settings.log_json)

    async def run(app: FastAPI) -> None:
        worker = app.state.events_worker
        if settings.is_sandbox and not await sandbox_server_reachable(settings):
            # The simulator lives in the sandbox server; without it there is nothing to
            # reconcile against (and no connection may be taken for deleted).
            worker.reconcile_enabled = False
            typer.echo(unreachable_message(settings) + "; delivering events only")
        if once:
            rounds = await worker.run_until_idle()
            reconciled = await worker.reconcile_once() if worker.reconcile_enabled else 0
            delivered = sum(r.delivered for r in rounds)
            typer.echo(f"delivered {delivered} event(s), reconciled {reconciled} connection(s)")
            return
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        worker.start()
        typer.echo(f"events worker {worker.worker_id} running")
        try:
            await stop.wait()
        finally:
            await worker.stop()

    asyncio.run(with_app(settings, run))
