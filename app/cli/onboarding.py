"""``pbf-headless onboarding …``: operator commands of the onboarding domain."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer
from fastapi import FastAPI

from app import audit
from app.cli.common import NOT_MIGRATED, cli_settings, fail, with_app
from app.config import Settings
from app.connections.fleet import (
    DONE,
    ConnectionResult,
    FleetSelection,
    FleetSummary,
    apply_schema_policy,
)
from app.connections.startup import resume_pending_work
from app.db import create_engine, create_sessionmaker
from app.fivetran.startup import build_fivetran_client
from app.kit.transport import build_client, build_transport
from app.migrations_runner import pending_heads
from app.observability import Metrics
from app.sandbox.remote import sandbox_server_reachable, unreachable_message

onboarding_cli = typer.Typer(help="End-users and connections.", no_args_is_help=True)


@onboarding_cli.command("resume")
def resume(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use sandbox mode.")] = False,
) -> None:
    """Finish work left behind: connections stuck in 'creating' (Fivetran was down or the
    process died mid-create) and offboardings in progress. Safe to run any time."""
    settings = cli_settings(sandbox)
    if settings.is_sandbox and not asyncio.run(sandbox_server_reachable(settings)):
        typer.echo("warning: " + unreachable_message(settings), err=True)
    # Sandbox mode: reach the running sandbox server's simulator over HTTP, never a new one.
    created, offboarded = asyncio.run(with_app(settings, _resume))
    typer.echo(f"connections finished: {created}; offboardings finished: {offboarded}")


async def _resume(app: FastAPI) -> tuple[int, int]:
    task = getattr(app.state, "onboarding_resume_task", None)
    if task is not None:  # the lifespan already started the same work: wait for it
        result: tuple[int, int] = await task
        return result
    return await resume_pending_work(app)


def _done_in_report(path: Path) -> set[str]:
    """Connection ids a previous run's report lists as done (updated or unchanged)."""
    done: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return done
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            if n == len(lines):
                continue  # a line cut short by an interrupted run: that connection is redone
            fail(f"{path}:{n} is not a report line (JSON)")
        if isinstance(item, dict) and item.get("outcome") in DONE:
            done.add(str(item.get("connection_id")))
    return done


async def _apply_policy(
    settings: Settings,
    selection: FleetSelection,
    *,
    done: set[str],
    concurrency: int,
    dry_run: bool,
    out: TextIO,
    progress: bool,
) -> FleetSummary:
    engine = create_engine(settings.effective_database_url)
    transport = build_transport(Metrics())
    http = build_client(transport)
    client = build_fivetran_client(http, settings)
    seen = [0]

    def on_result(result: ConnectionResult) -> None:
        out.write(json.dumps(result.as_dict(), separators=(",", ":")) + "\n")
        out.flush()  # each line is durable before the next connection: --resume relies on it
        seen[0] += 1
        if progress and seen[0] % 100 == 0:
            typer.echo(f"... {seen[0]} connections", err=True)

    try:
        async with engine.connect() as conn:
            if await conn.run_sync(pending_heads):
                fail(NOT_MIGRATED)
        return await apply_schema_policy(
            create_sessionmaker(engine),
            client,
            settings.onboarding.schema_policy,
            selection,
            done=done,
            concurrency=concurrency,
            dry_run=dry_run,
            on_result=on_result,
        )
    finally:
        await client.aclose()
        await http.aclose()
        await transport.shutdown()
        await engine.dispose()


@onboarding_cli.command("apply-schema-policy")
def apply_schema_policy_command(
    end_user: Annotated[
        list[str] | None,
        typer.Option("--end-user", help="Only this end-user's connections (external id; repeat)."),
    ] = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Only this service (repeat).")
    ] = None,
    connection: Annotated[
        list[str] | None, typer.Option("--connection", help="Only this connection id (repeat).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Append one JSON line per connection to this file (default: standard output).",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Skip the connections --report already lists as updated/unchanged."
        ),
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Connections in flight.")
    ] = 16,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and report what would change; no PATCH.")
    ] = False,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use sandbox mode.")] = False,
) -> None:
    """Bring the platform schema policy (PBF_ONBOARDING__SCHEMA_POLICY) onto existing
    connections at Fivetran: a too permissive schema_change_handling is lowered, blocked
    tables are disabled, hashed columns are hashed. Requests go through the client's hourly
    and per-second budgets (PBF_FIVETRAN__REQUESTS_PER_SECOND). One JSON line per connection
    (outcome updated | unchanged | would_update | failed, changes, error); a summary on
    standard error; exit 1 when a connection failed. Rerun with --resume to continue."""
    settings = cli_settings(sandbox)
    if resume and report is None:
        fail("--resume needs --report (the report of the run to continue)")
    if settings.is_sandbox and not settings.fivetran.base_url:
        if not asyncio.run(sandbox_server_reachable(settings)):
            fail(unreachable_message(settings))
    selection = FleetSelection(tuple(end_user or ()), tuple(service or ()), tuple(connection or ()))
    done = _done_in_report(report) if (resume and report is not None) else set()
    audit.set_actor(audit.Actor.cli())
    out: TextIO = report.open("a") if report is not None else sys.stdout
    try:
        summary = asyncio.run(
            _apply_policy(
                settings,
                selection,
                done=done,
                concurrency=concurrency,
                dry_run=dry_run,
                out=out,
                progress=report is not None,
            )
        )
    finally:
        if report is not None:
            out.close()
    typer.echo(json.dumps({"summary": summary.as_dict()}), err=True)
    if summary.failed:
        raise typer.Exit(1)
