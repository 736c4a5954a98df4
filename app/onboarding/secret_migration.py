"""Move secrets that older versions kept in ``connections.config`` into the vault.

Before secrets were located by path (:mod:`app.fivetran.secret_paths`), only top-level secret
names were split out: array items (``github.pats[]``), properties of objects in arrays
(``secrets_list[].value``) and nested objects (``pendo.aws_credentials.s3_role_arn``) were
stored in clear. A migration cannot use the vault keys, so this runs at startup (before
``creating`` connections are resumed) and as ``pbf-headless onboarding vault-secrets``.
It is idempotent: a config without clear secrets is left untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.fivetran import secret_paths
from app.onboarding import states
from app.onboarding.connections import OWNER
from app.onboarding.models import Connection

log = logging.getLogger("pbf.onboarding")


async def vault_plaintext_secrets(session: AsyncSession, app_state: Any) -> int:
    """Vault every clear secret left in a live connection's config; returns how many rows
    changed. Flushes; the caller commits (one transaction: all rows or none)."""
    changed = 0
    rows = await session.scalars(select(Connection).where(Connection.state != states.DELETED))
    for conn in list(rows.all()):
        if not conn.config:
            continue
        split = secret_paths.split_secrets(conn.service, dict(conn.config), allow_kept=True)
        if not split.secrets:
            continue
        for path, value in split.secrets.items():
            await app_state.vault.put(
                session,
                end_user_id=conn.end_user_id,
                owner_type=OWNER,
                owner_id=conn.id,
                field=f"credentials.{path}",
                value=value,
            )
        conn.config = split.stored
        conn.secret_fields = sorted(set(conn.secret_fields or []) | set(split.secrets))
        changed += 1
    await session.flush()
    if changed:
        log.info("vaulted clear secrets of older connections", extra={"connections": changed})
    return changed
