"""CLI of the events domain: ``pbf-headless worker`` and ``pbf-headless fivetran webhooks``.

Both run the real app's lifespan (engine, http client, vault, Fivetran client…) without
serving HTTP, so the worker and the API share exactly the same wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

T = TypeVar("T")

fivetran_cli = typer.Typer(help="Fivetran account set-up.", no_args_is_help=True)
webhooks_cli = typer.Typer(help="The Fivetran webhook that reports to us.", no_args_is_help=True)
fivetran_cli.add_typer(webhooks_cli, name="webhooks")


def _load(**events: Any) -> Any:
    from app.cli import _database_pending, _fail, _settings
    from app.config import production_problems

    settings = _settings()
    if events:
        settings = settings.model_copy(update={"events": settings.events.model_copy(update=events)})
    problems = production_problems(settings)
    if problems:
        _fail("production mode cannot start: " + "; ".join(problems))
    if _database_pending(settings):
        _fail("the database is not migrated; run 'pbf-headless migrate' first")
    return settings


async def _with_app(settings: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
    from app.main import create_app

    # Never a second simulator: in sandbox mode this process reaches the sandbox server's.
    app = create_app(settings, include_sandbox=False)
    async with app.router.lifespan_context(app):
        return await fn(app)


def worker_command(
    once: Annotated[
        bool,
        typer.Option("--once", help="Deliver what is due, reconcile once, and exit (cron)."),
    ] = False,
) -> None:
    """Run the event delivery and reconciliation loops (scale-out; SIGTERM stops cleanly)."""
    from app.observability import configure_logging
    from app.sandbox.remote import sandbox_server_reachable, unreachable_message

    settings = _load(run_worker_in_api=False, register_webhook_on_startup=False)
    configure_logging(settings.log_level, json_lines=settings.log_json)

    async def run(app: Any) -> None:
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

    asyncio.run(_with_app(settings, run))


async def _ensure_over_network(settings: Any, group: str | None) -> Any:
    """Talk to Fivetran (or, in sandbox mode, to the running sandbox server) over the network:
    an in-process simulator of this short-lived command would forget the webhook at exit."""
    from types import SimpleNamespace

    from app.events.registration import ensure_webhook
    from app.fivetran.startup import start_fivetran
    from app.observability import Metrics
    from app.transport import build_client, build_transport

    http = build_client(build_transport(Metrics()))
    holder = SimpleNamespace(state=SimpleNamespace(http=http))
    client = start_fivetran(holder, settings)
    try:
        return await ensure_webhook(client, settings, group_id=group)
    finally:
        await client.aclose()
        await http.aclose()


@webhooks_cli.command("ensure")
def webhooks_ensure(
    group: Annotated[
        str | None,
        typer.Option("--group", help="Register a group webhook instead of the account one."),
    ] = None,
) -> None:
    """Register (or update) the Fivetran webhook: our URL, the events we handle, the secret.

    Idempotent: finds an existing webhook by URL (account or group) and updates it. In
    sandbox mode it registers at the running sandbox server's simulator (start it first).
    """
    import httpx

    from app.cli import _fail, _settings
    from app.config import production_problems
    from app.fivetran.errors import FivetranError

    settings = _settings()
    problems = production_problems(settings)
    if problems:
        _fail("production mode cannot start: " + "; ".join(problems))
    try:
        result = asyncio.run(_ensure_over_network(settings, group))
    except (FivetranError, httpx.HTTPError, ValueError) as exc:
        _fail(f"could not register the webhook: {type(exc).__name__}: {exc}")
        return
    typer.echo(
        f"{result.action} {result.scope} webhook {result.webhook_id} -> {result.url} "
        f"events={','.join(result.events)}"
    )
    if result.duplicates:
        typer.echo(f"note: other webhooks with this URL: {', '.join(result.duplicates)}")
