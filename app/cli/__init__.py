"""``pbf-headless`` command line: one module per command group, assembled here.

``serve``/``sandbox-counterparties``/``migrate``/``openapi``/``settings``
(:mod:`app.cli.server`), ``api-keys``,
``audit``, ``keys`` (vault keys), ``providers``, ``fivetran``, ``worker``, ``onboarding``.
Shared helpers live in :mod:`app.cli.common`; no domain package imports the CLI.
"""

from __future__ import annotations

import typer

from app.cli import server
from app.cli.api_keys import api_keys_cli
from app.cli.audit import audit_cli
from app.cli.fivetran import fivetran_cli
from app.cli.keys import keys_cli
from app.cli.onboarding import onboarding_cli
from app.cli.providers import providers_cli
from app.cli.server import worker_app
from app.cli.worker import worker_command

cli = typer.Typer(
    help="pbf-headless: headless Powered-by-Fivetran onboarding service.",
    no_args_is_help=True,
    add_completion=False,
)
cli.command()(server.migrate)
cli.command()(server.serve)
cli.command("sandbox-counterparties")(server.sandbox_counterparties)
cli.add_typer(audit_cli, name="audit")
cli.add_typer(api_keys_cli, name="api-keys")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(fivetran_cli, name="fivetran")
cli.command("worker")(worker_command)
cli.add_typer(providers_cli, name="providers")
cli.add_typer(onboarding_cli, name="onboarding")
cli.command()(server.openapi)
cli.command("settings")(server.settings_table)


__all__ = ["cli", "main", "worker_app"]


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
