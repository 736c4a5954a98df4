"""``pbf-headless audit export``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import iter_all, record_as_dict
from app.cli.common import cli_settings, run_with_session

audit_cli = typer.Typer(help="The audit trail.", no_args_is_help=True)


@audit_cli.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Export the whole audit trail as JSON lines, oldest first."""

    async def _export(session: AsyncSession) -> list[str]:
        return [json.dumps(record_as_dict(r), sort_keys=True) async for r in iter_all(session)]

    lines = run_with_session(cli_settings(), _export)
    text = "".join(line + "\n" for line in lines)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"exported {len(lines)} audit record(s) to {output}", err=True)
