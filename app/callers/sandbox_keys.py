"""Sandbox-only API keys that replace their predecessors instead of piling up.

* The **sandbox key** (admin, named ``sandbox``) is what ``make run`` prints. Its plaintext is
  kept in ``<data_dir>/sandbox-api-key`` (mode 0600, sandbox mode only) so the next start
  reuses it; when the file is missing or its key no longer authenticates (another database,
  revoked), a new key is made and every other active ``sandbox`` key is revoked.
* The **demo key** (``sandbox-demo``: read/write, restricted to end-users ``demo-*``) is what
  the ``/sandbox/demo`` page uses; it is kept in the server's memory only (see
  :mod:`app.sandbox.demo.keys`).

Both go through :func:`replace_named_key`: one active key per name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.models import ApiKey
from app.callers.service import Caller, authenticate, create_api_key
from app.db import utcnow
from app.errors import Unauthorized

SANDBOX_KEY_NAME = "sandbox"
SANDBOX_KEY_FILE = "sandbox-api-key"


@dataclass(frozen=True)
class SandboxKey:
    """A usable sandbox key and how it was obtained."""

    key: str
    key_id: str
    reused: bool
    revoked: int = 0


async def replace_named_key(
    session: AsyncSession, *, name: str, scopes: list[str], end_user_prefix: str | None = None
) -> tuple[ApiKey, str, int]:
    """Create a key called ``name`` and revoke every other active key of that name.

    Returns the row, the full key (shown once) and how many older keys were revoked.
    """
    older = (
        await session.scalars(
            select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        )
    ).all()
    now = utcnow()
    for row in older:
        row.revoked_at = now
    created, key = await create_api_key(
        session, name=name, scopes=scopes, end_user_prefix=end_user_prefix
    )
    return created, key, len(older)


async def usable_caller(session: AsyncSession, key: str) -> Caller | None:
    """The caller ``key`` authenticates as, or None (unknown, malformed or revoked)."""
    try:
        return await authenticate(session, f"Bearer {key}")
    except Unauthorized:
        return None


def read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return text or None


def write_key_file(path: Path, key: str) -> None:
    """Write ``key`` to ``path`` readable by the owner only (0600 from creation on)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def ensure_sandbox_key(session: AsyncSession, *, data_dir: Path) -> SandboxKey:
    """Reuse the sandbox key stored under ``data_dir`` when it still works as an admin key
    named ``sandbox``; otherwise make a new one, revoke the older ones and store it."""
    path = data_dir / SANDBOX_KEY_FILE
    stored = read_key_file(path)
    caller = await usable_caller(session, stored) if stored else None
    if (
        stored
        and caller is not None
        and caller.name == SANDBOX_KEY_NAME
        and "admin" in caller.scopes
        and caller.end_user_prefix is None
    ):
        return SandboxKey(key=stored, key_id=caller.key_id, reused=True)
    row, key, revoked = await replace_named_key(session, name=SANDBOX_KEY_NAME, scopes=["admin"])
    write_key_file(path, key)
    return SandboxKey(key=key, key_id=row.id, reused=False, revoked=revoked)
