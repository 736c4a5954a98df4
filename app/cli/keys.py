"""``pbf-headless keys …``: status, rewrap, generate, rotate.

The commands read the same settings as the service (``PBF_ENCRYPTION_KEYS`` /
``PBF_VAULT__KEY_FILE`` / the sandbox keyring, ``DATABASE_URL``) and may run while the
service is serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import audit
from app.cli.common import fail, run_with_vault
from app.config import Settings, load_settings
from app.vault import Vault
from app.vault.errors import VaultError
from app.vault.key_providers import (
    KEY_ID_RE,
    generate_key,
    keyring_document,
    new_key_id,
    parse_keyring,
    write_private_file,
)
from app.vault.models import VaultSecret
from app.vault.rotation import RewrapReport, key_counts, rewrap
from app.vault.startup import sandbox_keyring_path

keys_cli = typer.Typer(
    help="Encryption keys of the token vault: status, rewrap, generate, rotate, activate, remove.",
    no_args_is_help=True,
)


def _audit(settings: Settings, action: str, kid: str, **details: Any) -> None:
    """Record a vault key operation in the audit trail (best effort: editing a keyring file
    works without a database, so a missing database only warns)."""

    async def go(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> None:
        async with maker() as session, session.begin():
            await audit.record(
                session, action=action, target_type="vault_key", target_id=kid, details=details
            )

    try:
        run_with_vault(settings, go)
    except Exception:
        typer.echo("warning: the audit record of this key operation was not written", err=True)


@keys_cli.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Rows per key id, and whether each key is configured and active."""

    async def go(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> Any:
        async with maker() as session:
            return vault, await key_counts(session, vault)

    vault, counts = run_with_vault(load_settings(), go)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "active": {"provider": vault.active.provider, "kek_id": vault.active.kek_id},
                    "keys": [
                        {
                            "provider": c.provider,
                            "kek_id": c.kek_id,
                            "rows": c.rows,
                            "active": c.active,
                            "configured": c.configured,
                        }
                        for c in counts
                    ],
                },
                indent=2,
            )
        )
        return
    typer.echo(f"{'PROVIDER':<8} {'KEY ID':<40} {'ROWS':>8}  {'ACTIVE':<6}  CONFIGURED")
    for c in counts:
        typer.echo(
            f"{c.provider:<8} {c.kek_id:<40} {c.rows:>8}  {'yes' if c.active else '-':<6}  "
            f"{'yes' if c.configured else 'NO'}"
        )
    stale = sum(c.rows for c in counts if not c.active)
    if stale:
        typer.echo(f"{stale} secret(s) not under the active key: run 'pbf-headless keys rewrap'")
    else:
        typer.echo("every secret is under the active key; inactive keys with 0 rows can be removed")
    missing = [c for c in counts if c.rows and not c.configured]
    for c in missing:
        typer.echo(
            f"warning: {c.rows} secret(s) under key {c.kek_id!r} ({c.provider}) which is not "
            "configured: they cannot be read until it is added back",
            err=True,
        )


@keys_cli.command("rewrap")
def rewrap_cmd(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Rows per transaction.")
    ] = 200,
    from_key: Annotated[
        str | None, typer.Option("--from", help="Only rows under this key id.")
    ] = None,
) -> None:
    """Re-wrap every data key still under an older key with the active key (resumable)."""

    def show(r: RewrapReport) -> None:
        typer.echo(
            f"rewrap: {r.done}/{r.total} done (rewrapped {r.rewrapped}, "
            f"already current {r.skipped}, failed {len(r.failures)})"
        )

    async def go(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> RewrapReport:
        typer.echo(f"active key: {vault.active.kek_id} ({vault.active.provider})")
        report = await rewrap(maker, vault, batch_size=batch_size, from_key=from_key, progress=show)
        async with maker() as session, session.begin():
            await audit.record(
                session,
                action="vault_key.rewrap",
                target_type="vault_key",
                target_id=vault.active.kek_id,
                details={"rewrapped": report.rewrapped, "failed": len(report.failures)},
            )
        return report

    report = run_with_vault(load_settings(), go)
    for f in report.failures:
        typer.echo(f"failed: {f.secret_id} under {f.kek_id!r} ({f.provider}): {f.reason}", err=True)
    if report.failures:
        fail(f"{len(report.failures)} secret(s) could not be re-wrapped", code=1)
    typer.echo(f"done: {report.rewrapped} secret(s) re-wrapped")


@keys_cli.command("generate")
def generate(
    kid: Annotated[str | None, typer.Option("--kid", help="Key id (default: generated).")] = None,
) -> None:
    """Print a new random key entry to add to the keyring (nothing is stored)."""

    kid = kid or new_key_id()
    if not KEY_ID_RE.match(kid):
        fail("invalid key id: use 1-64 characters of A-Z a-z 0-9 . _ : -")
    typer.echo(
        f'Add this entry to "keys" in PBF_ENCRYPTION_KEYS or the key file, set "active" to '
        f"{kid!r}, roll out, then run 'pbf-headless keys rewrap':",
        err=True,
    )
    typer.echo(json.dumps({kid: generate_key()}))


KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="Keyring file to update (default: PBF_VAULT__KEY_FILE, or the sandbox keyring).",
    ),
]


def _key_file_doc(settings: Settings, key_file: Path | None) -> tuple[Path, dict[str, Any]]:
    """The keyring file to edit and its validated content."""

    path = key_file or settings.vault.key_file
    if path is None and settings.is_sandbox and settings.vault.encryption_keys is None:
        path = sandbox_keyring_path(settings)
    if path is None:
        fail(
            "no keyring file: pass --key-file (for keys in PBF_ENCRYPTION_KEYS use "
            "'keys generate' and edit the variable)"
        )
    try:
        text = path.read_text()
        parse_keyring(text, source=f"key file {path}")  # validate before touching it
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except VaultError as exc:
        fail(exc.detail)
    doc: dict[str, Any] = json.loads(text)
    return path, doc


def _write_key_file(path: Path, active: str, keys: dict[str, str]) -> None:

    text = keyring_document(active, keys)
    parse_keyring(text, source=f"key file {path}")
    write_private_file(path, text)


@keys_cli.command("rotate")
def rotate(
    key_file: KeyFileOption = None,
    kid: Annotated[str | None, typer.Option("--kid", help="New key id.")] = None,
    activate: Annotated[
        bool,
        typer.Option(
            "--activate/--no-activate",
            help="Make the new key active now (default), or only add it (multi-replica step 1).",
        ),
    ] = True,
) -> None:
    """Add a new random key to a keyring *file* (old keys stay for reading).

    One instance: ``keys rotate``, restart, ``keys rewrap``. Several replicas: ``keys rotate
    --no-activate`` and roll out (every replica can read the new key), then ``keys activate
    KID`` and roll out, then ``keys rewrap``; finally ``keys remove OLD``.
    """

    path, doc = _key_file_doc(load_settings(), key_file)
    keys: dict[str, str] = dict(doc["keys"])
    kid = kid or new_key_id(set(keys))
    if not KEY_ID_RE.match(kid):
        fail("invalid key id: use 1-64 characters of A-Z a-z 0-9 . _ : -")
    if kid in keys:
        fail(f"key id {kid!r} already exists in {path}")
    keys[kid] = generate_key()
    previous = doc["active"]
    _write_key_file(path, kid if activate else previous, keys)
    _audit(load_settings(), "vault_key.rotate", kid, activated=activate, previous=previous)
    if activate:
        typer.echo(f"{path}: added key {kid} and made it active (previous active: {previous})")
        typer.echo("next: restart/roll out the service, then run 'pbf-headless keys rewrap'")
    else:
        typer.echo(f"{path}: added key {kid} (active is still {previous})")
        typer.echo(f"next: roll out, then 'pbf-headless keys activate {kid}' and roll out again")


@keys_cli.command("activate")
def activate_cmd(
    kid: Annotated[str, typer.Argument(help="Key id to make active.")],
    key_file: KeyFileOption = None,
) -> None:
    """Make an existing key of a keyring file the active one (new writes use it)."""
    path, doc = _key_file_doc(load_settings(), key_file)
    if kid not in doc["keys"]:
        fail(f"key id {kid!r} is not in {path}")
    _write_key_file(path, kid, dict(doc["keys"]))
    _audit(load_settings(), "vault_key.activate", kid, previous=doc["active"])
    typer.echo(f"{path}: active key is now {kid} (previous: {doc['active']})")
    typer.echo("next: restart/roll out the service, then run 'pbf-headless keys rewrap'")


@keys_cli.command("remove")
def remove_cmd(
    kid: Annotated[str, typer.Argument(help="Key id to remove.")],
    key_file: KeyFileOption = None,
) -> None:
    """Remove a key from a keyring file; refused while it is active or any secret uses it."""

    settings = load_settings()
    path, doc = _key_file_doc(settings, key_file)
    if kid not in doc["keys"]:
        fail(f"key id {kid!r} is not in {path}")
    if kid == doc["active"]:
        fail(f"key id {kid!r} is the active key; activate another key first")

    async def count(vault: Vault, maker: async_sessionmaker[AsyncSession]) -> int:
        async with maker() as session:
            stmt = (
                select(func.count())
                .select_from(VaultSecret)
                .where(VaultSecret.kek_provider == "local", VaultSecret.kek_id == kid)
            )
            return int((await session.execute(stmt)).scalar_one())

    in_use = run_with_vault(settings, count)
    if in_use:
        fail(
            f"{in_use} secret(s) still use key {kid!r}: run 'pbf-headless keys rewrap' first "
            "(removing it would make them unreadable)"
        )
    keys = {k: v for k, v in doc["keys"].items() if k != kid}
    _write_key_file(path, doc["active"], keys)
    _audit(settings, "vault_key.remove", kid)
    typer.echo(f"{path}: removed key {kid}; restart/roll out the service to drop it from memory")
