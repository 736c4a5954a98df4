"""``pbf-headless fivetran webhooks ensure``: register the webhook that reports to us."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import typer

from app.cli.common import cli_settings, fail, fail_on_production_problems
from app.config import Settings
from app.events.registration import EnsureResult, ensure_webhook
from app.fivetran.errors import FivetranError
from app.fivetran.startup import build_fivetran_client
from app.kit.transport import build_client, build_transport
from app.observability import Metrics

fivetran_cli = typer.Typer(help="Fivetran account set-up.", no_args_is_help=True)
webhooks_cli = typer.Typer(help="The Fivetran webhook that reports to us.", no_args_is_help=True)
fivetran_cli.add_typer(webhooks_cli, name="webhooks")


async def _ensure_over_network(settings: Settings, group: str | None) -> EnsureResult:
    """Talk to Fivetran (or, in sandbox mode, to the running sandbox server) over the network:
    an in-process simulator of this short-lived command would forget the webhook at exit."""
    transport = build_transport(Metrics())
    http = build_client(transport)
    client = build_fivetran_client(http, settings)
    try:
        return await ensure_webhook(client, settings, group_id=group)
    finally:
        await client.aclose()
        await http.aclose()
        await transport.shutdown()


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
    settings = cli_settings()
    fail_on_production_problems(settings)
    try:
        result = asyncio.run(_ensure_over_network(settings, group))
    except (FivetranError, httpx.HTTPError, ValueError) as exc:
        fail(f"could not register the webhook: {type(exc).__name__}: {exc}")
    typer.echo(
        f"{result.action} {result.scope} webhook {result.webhook_id} -> {result.url} "
        f"events={','.join(result.events)}"
    )
    if result.duplicates:
        typer.echo(f"note: other webhooks with this URL: {', '.join(result.duplicates)}")
