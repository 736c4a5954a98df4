"""``pbf-headless providers …``: inspect and validate the provider catalog and OAuth apps."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import cli_settings, run_with_vault
from app.config import Settings, load_settings
from app.providers.catalog_data import credential_services
from app.providers.errors import ProviderConfigError
from app.providers.registry import (
    APP_OWNER,
    APP_SECRET_FIELD,
    PLATFORM_END_USER,
    ProviderRegistry,
)
from app.providers.startup import build_registry
from app.vault import Vault
from app.vault.secret import Secret

providers_cli = typer.Typer(
    help="OAuth providers: catalog, apps, validation.", no_args_is_help=True
)


def _registry_or_exit(sandbox: bool) -> ProviderRegistry:
    """The validated registry; on configuration problems, list each on stderr and exit 1."""
    try:
        return build_registry(cli_settings(sandbox))
    except ProviderConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"problem: {problem}", err=True)
        raise typer.Exit(1) from None


@providers_cli.command("check")
def check(
    sandbox: Annotated[bool, typer.Option(help="Check as in sandbox mode.")] = False,
) -> None:
    """Validate the catalog plus PBF_OAUTH__* configuration; exit 1 listing every problem."""
    registry = _registry_or_exit(sandbox)
    typer.echo(
        f"ok: {len(registry.all())} providers, {len(registry.configured())} with an OAuth app"
    )


@providers_cli.command("list")
def list_providers(
    sandbox: Annotated[bool, typer.Option(help="List as in sandbox mode.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List providers: key, Fivetran service, app configured, client auth, PKCE, refresh token."""
    registry = _registry_or_exit(sandbox)
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
            "route": "oauth2" if p.spec.fivetran.hands_over_token else "connect_card",
            "grant": "authorization_code",
            **p.spec.verification.public(),
            **p.spec.identity.public(),
        }
        for p in registry.all()
    ]
    for o1 in registry.oauth1.all():  # X / Twitter: an OAuth 1.0a browser flow
        rows.append(
            {
                "key": o1.key,
                "fivetran_service": o1.fivetran_service,
                "configured": True,
                "sandboxed": o1.sandboxed,
                "origin": "catalog",
                "token_auth_method": "oauth1_hmac_sha1",
                "pkce": False,
                "requires_refresh_token": False,
                "rotation": "n/a",
                "inputs": [],
                "route": "oauth1",
                "grant": "oauth1a",
                **o1.verification.public(),
            }
        )
    for service in credential_services().values():
        rows.append(
            {
                "key": service.service,
                "fivetran_service": service.service,
                "configured": True,
                "sandboxed": False,
                "origin": "catalog",
                "token_auth_method": "-",
                "pkce": False,
                "requires_refresh_token": False,
                "rotation": "n/a",
                "inputs": list(service.auth_fields),
                "route": "credentials",
                "grant": service.grant,
                **service.verification.public(),
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = "sandbox" if row["sandboxed"] else ("configured" if row["configured"] else "-")
        typer.echo(
            f"{row['key']:<20} {row['fivetran_service']:<20} {state:<10} "
            f"{row['token_auth_method']:<20} pkce={'on' if row['pkce'] else 'off':<3} "
            f"rt={'required' if row['requires_refresh_token'] else 'no':<8} "
            f"rotation={row['rotation']:<8} route={row['route']:<12} "
            + (
                f"identity={row['identity_source']:<14} "
                if row.get("identity_source")
                else f"{'identity=-':<24} "
            )
            + (
                "verified"
                if row["verified"]
                else "UNVERIFIED: " + "; ".join(row["unverified_facts"])
            )
        )


def _known_app(settings: Settings, key: str) -> None:
    app = settings.oauth.apps.get(key)
    if app is None or not app.client_secret_in_vault:
        typer.echo(
            f"error: configure PBF_OAUTH__APPS__{key.upper()}__CLIENT_ID and "
            f"PBF_OAUTH__APPS__{key.upper()}__CLIENT_SECRET_IN_VAULT=true first",
            err=True,
        )
        raise typer.Exit(2)


@providers_cli.command("set-secret")
def set_secret(
    key: Annotated[str, typer.Argument(help="Provider key, e.g. salesforce.")],
    from_stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the secret from standard input.")
    ] = False,
) -> None:
    """Store an OAuth app's client secret in the vault (encrypted, owner oauth_app)."""

    settings = load_settings()
    _known_app(settings, key)
    if from_stdin:
        value = sys.stdin.read().strip()
    else:
        value = typer.prompt("Client secret", hide_input=True, confirmation_prompt=True)
    if not value:
        typer.echo("error: empty secret", err=True)
        raise typer.Exit(2)

    async def put(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> None:
        async with maker() as session, session.begin():
            await vault.put(
                session,
                end_user_id=PLATFORM_END_USER,
                owner_type=APP_OWNER,
                owner_id=key,
                field=APP_SECRET_FIELD,
                value=Secret(value),
            )

    run_with_vault(settings, put)
    typer.echo(f"stored the client secret of {key} in the vault")


@providers_cli.command("delete-secret")
def delete_secret(key: Annotated[str, typer.Argument(help="Provider key.")]) -> None:
    """Shred an OAuth app's client secret from the vault."""

    settings = load_settings()

    async def delete(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> int:
        async with maker() as session, session.begin():
            return int(
                await vault.delete(
                    session, owner_type=APP_OWNER, owner_id=key, field=APP_SECRET_FIELD
                )
            )

    count = run_with_vault(settings, delete)
    typer.echo(f"deleted {count} secret(s) of {key}")
