"""``pbf-headless providers …``: inspect and validate the provider catalog and OAuth apps."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from app.config import Settings, load_settings
from app.providers.errors import ProviderConfigError
from app.providers.startup import build_registry

providers_cli = typer.Typer(
    help="OAuth providers: catalog, apps, validation.", no_args_is_help=True
)


def _settings(sandbox: bool) -> Settings:
    overrides: dict[str, Any] = {"mode": "sandbox"} if sandbox else {}
    return load_settings(**overrides)


@providers_cli.command("check")
def check(
    sandbox: Annotated[bool, typer.Option(help="Check as in sandbox mode.")] = False,
) -> None:
    """Validate the catalog plus PBF_OAUTH__* configuration; exit 1 listing every problem."""
    try:
        registry = build_registry(_settings(sandbox))
    except ProviderConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"problem: {problem}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"ok: {len(registry.all())} providers, {len(registry.configured())} with an OAuth app"
    )


@providers_cli.command("list")
def list_providers(
    sandbox: Annotated[bool, typer.Option(help="List as in sandbox mode.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List providers: key, Fivetran service, app configured, client auth, PKCE, refresh token."""
    try:
        registry = build_registry(_settings(sandbox))
    except ProviderConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"problem: {problem}", err=True)
        raise typer.Exit(1) from None
    rows = [
        {
            "key": p.key,
            "fivetran_service": p.fivetran_service,
            "configured": registry.is_configured(p.key),
            "sandboxed": p.sandboxed,
            "origin": p.origin,
            "token_auth_method": p.token_auth_method,
            "pkce": p.spec.pkce,
            "requires_refresh_token": p.requires_refresh_token,
            "rotation": p.spec.refresh_token_rotation,
            "inputs": [i.name for i in p.input_specs],
        }
        for p in registry.all()
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "sandbox" if row["sandboxed"] else ("configured" if row["configured"] else "-")
        typer.echo(
            f"{row['key']:<20} {row['fivetran_service']:<20} {state:<10} "
            f"{row['token_auth_method']:<20} pkce={'on' if row['pkce'] else 'off':<3} "
            f"rt={'required' if row['requires_refresh_token'] else 'no':<8} "
            f"rotation={row['rotation']}"
        )
