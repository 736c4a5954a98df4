"""``pbf-headless onboarding …``: operator commands of the onboarding domain."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

onboarding_cli = typer.Typer(help="End-users and connections.", no_args_is_help=True)


@onboarding_cli.command("resume")
def resume(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use sandbox mode.")] = False,
) -> None:
    """Finish work left behind: connections stuck in 'creating' (Fivetran was down or the
    process died mid-create) and offboardings in progress. Safe to run any time."""
    from app.config import load_settings

    settings = load_settings(**({"mode": "sandbox"} if sandbox else {}))
    if settings.is_sandbox:
        from app.sandbox.remote import sandbox_server_reachable, unreachable_message

        if not asyncio.run(sandbox_server_reachable(settings)):
            typer.echo("warning: " + unreachable_message(settings), err=True)
    created, offboarded = asyncio.run(_resume(settings))
    typer.echo(f"connections finished: {created}; offboardings finished: {offboarded}")


async def _resume(settings: object) -> tuple[int, int]:
    from app.main import create_app
    from app.onboarding.startup import resume_pending_work

    # Sandbox mode: reach the running sandbox server's simulator over HTTP, never a new one.
    app = create_app(settings, include_sandbox=False)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        task = getattr(app.state, "onboarding_resume_task", None)
        if task is not None:  # the lifespan already started the same work: wait for it
            result: tuple[int, int] = await task
            return result
        return await resume_pending_work(app)


@onboarding_cli.command("vault-secrets")
def vault_secrets(
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use sandbox mode.")] = False,
) -> None:
    """Move secrets older versions stored in clear in connection configs (array items,
    nested objects) into the vault. Idempotent; also runs at every startup."""
    from app.config import load_settings

    settings = load_settings(**({"mode": "sandbox"} if sandbox else {}))
    changed = asyncio.run(_vault_secrets(settings))
    typer.echo(f"connections with secrets moved to the vault: {changed}")


async def _vault_secrets(settings: object) -> int:
    from app.main import create_app
    from app.onboarding.secret_migration import vault_plaintext_secrets

    app = create_app(settings)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        task = getattr(app.state, "onboarding_resume_task", None)
        if task is not None:  # the lifespan runs the same step first: let it finish
            await task
        async with app.state.sessionmaker() as session:
            changed = await vault_plaintext_secrets(session, app.state)
            await session.commit()
    return changed + int(getattr(app.state, "secrets_vaulted", 0) or 0)
