"""``pbf-headless onboarding …``: operator commands of the onboarding domain."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from fastapi import FastAPI

from app.cli.common import cli_settings, with_app
from app.connections.startup import resume_pending_work
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
