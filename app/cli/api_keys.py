"""``pbf-headless api-keys ensure-sandbox | create | list | revoke``.

Contract (ARCHITECTURE §8): ``api-keys create --name N [--scope S]…`` prints the new key
alone on the last line.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.sandbox_keys import SandboxKey, ensure_sandbox_key
from app.callers.service import create_api_key, list_api_keys, revoke_api_key
from app.cli.common import cli_settings, fail, run_with_session
from app.config import Settings
from app.errors import AppError

api_keys_cli = typer.Typer(help="Manage caller API keys.", no_args_is_help=True)


def ensure_sandbox_key_file(settings: Settings) -> SandboxKey:
    """The sandbox admin key stored under the data directory (reused while it works)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def _ensure(session: AsyncSession) -> SandboxKey:
        return await ensure_sandbox_key(session, data_dir=settings.data_dir)

    return run_with_session(settings, _ensure)


@api_keys_cli.command("ensure-sandbox")
def api_keys_ensure_sandbox() -> None:
    """Sandbox mode only: print the sandbox admin key, alone on the last line. Reuses the key
    stored in <data_dir>/sandbox-api-key (0600) while it works; otherwise creates one,
    revokes older 'sandbox' keys and stores it."""
    settings = cli_settings()
    if not settings.is_sandbox:
        fail("ensure-sandbox works in sandbox mode only (PBF_MODE=sandbox)")
    made = ensure_sandbox_key_file(settings)
    if made.reused:
        typer.echo(f"reusing sandbox API key {made.key_id}")
    else:
        typer.echo(
            f"created sandbox API key {made.key_id} (admin)"
            + (f"; revoked {made.revoked} older sandbox key(s)" if made.revoked else "")
        )
    typer.echo(made.key)


@api_keys_cli.command("create")
def api_keys_create(
    name: Annotated[str, typer.Option(help="Who uses this key.")],
    scope: Annotated[
        list[str] | None, typer.Option(help="read | write | admin (repeatable).")
    ] = None,
    end_user_prefix: Annotated[
        str | None,
        typer.Option(help="Restrict the key to end-users whose external id starts with this."),
    ] = None,
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""

    settings = cli_settings()

    async def _create(session: AsyncSession) -> tuple[Any, str]:
        return await create_api_key(
            session, name=name, scopes=scope or ["read", "write"], end_user_prefix=end_user_prefix
        )

    try:
        row, key = run_with_session(settings, _create)
    except AppError as exc:
        fail(exc.detail)
        return
    typer.echo(
        f"created API key {row.id} ({row.name}) scopes={','.join(row.scopes)}"
        + (f" end_user_prefix={row.end_user_prefix}" if row.end_user_prefix else "")
    )
    typer.echo("store it now; it is not shown again:")
    typer.echo(key)


@api_keys_cli.command("list")
def api_keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List API keys (never their secrets)."""

    rows = run_with_session(cli_settings(), list_api_keys)
    items: list[dict[str, Any]] = [
        {
            "id": r.id,
            "name": r.name,
            "scopes": r.scopes,
            "end_user_prefix": r.end_user_prefix,
            "created_at": r.created_at.isoformat(),
            "last_used_at": r.last_used_at.isoformat() if r.last_used_at else None,
            "revoked": r.revoked_at is not None,
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for i in items:
        typer.echo(
            f"{i['id']}  {i['name']:<24} {','.join(i['scopes'] or []):<16} "
            f"{'REVOKED' if i['revoked'] else 'active'}"
        )


@api_keys_cli.command("revoke")
def api_keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (pbf_<id>_…).")]) -> None:
    """Revoke an API key; it stops working immediately."""

    if key_id.startswith("pbf_"):
        key_id = key_id.split("_")[1]

    async def _revoke(session: AsyncSession) -> Any:
        return await revoke_api_key(session, key_id)

    try:
        run_with_session(cli_settings(), _revoke)
    except AppError as exc:
        fail(exc.detail)
    typer.echo(f"revoked API key {key_id}")
