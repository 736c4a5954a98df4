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

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import states
from app.connections.models import Connection
from app.connections.service import OWNER
from app.fivetran import secret_paths
from app.state import AppState

log = logging.getLogger("pbf.onboarding")


#: Rows read per page: the scan runs at every start, so it must not load every connection
#: at once (10,000 rows as ORM objects raised a worker's peak RSS by up to ~30 MB when the
#: scan overlapped requests).
PAGE_SIZE = 500


async def vault_plaintext_secrets(session: AsyncSession, app_state: AppState) -> int:
    """Vault every clear secret left in a live connection's config; returns how many rows
    changed. Reads ``(id, service, config)`` a page at a time and loads only the rows it
    changes. Flushes; the caller commits (one transaction: all rows or none)."""
    changed = 0
    after = ""
    while True:
        page = (
            await session.execute(
                select(Connection.id, Connection.service, Connection.config)
                .where(Connection.state != states.DELETED, Connection.id > after)
                .order_by(Connection.id)
                .limit(PAGE_SIZE)
            )
        ).all()
        if not page:
            break
        after = page[-1].id
        for conn_id, service, config in page:
            if not config:
                continue
            split = secret_paths.split_secrets(service, dict(config), allow_kept=True)
            if not split.secrets:
                continue
            conn = await session.get_one(Connection, conn_id)
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
