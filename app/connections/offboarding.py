"""Offboarding an end-user: revoke and shred its secrets, delete its connections and group.

It lives with connections because it acts on them; :mod:`app.end_users` only marks an
end-user as being offboarded (:func:`app.end_users.service.start_offboarding`).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import service as conn_service
from app.connections import states
from app.connections.models import Connection
from app.db import utcnow
from app.end_users.models import EndUser
from app.end_users.service import OFFBOARDED, OFFBOARDING
from app.fivetran.errors import FivetranError, FivetranNotFound
from app.state import AppState

log = logging.getLogger("pbf.onboarding")


async def run_offboarding(session: AsyncSession, app_state: AppState, end_user: EndUser) -> bool:
    """Do (or continue) the offboarding of ``end_user``; True when it is complete.

    Commits after each completed step (named durable points), so a failure part-way leaves
    consistent, resumable state and never an undone secret shredding.
    """
    # Durable point "offboarding started": no new connections from now on.
    await session.commit()
    conns = list(
        (
            await session.scalars(select(Connection).where(Connection.end_user_id == end_user.id))
        ).all()
    )
    # 1. Revoke what the provider allows, then crypto-shred every secret of the end-user.
    for conn in conns:
        await conn_service.revoke_tokens(session, app_state, conn)
    await app_state.vault.shred_end_user(session, end_user.id)
    await session.commit()  # durable point "secrets shredded"

    # 2. Fivetran connections, then the dedicated group.
    client = app_state.fivetran
    try:
        for conn in conns:
            if conn.state == states.DELETED:
                continue  # deleted at Fivetran already (by the caller or an earlier run)
            await conn_service.delete_remote(app_state, conn)
            await states.transition(session, conn, states.DELETED, reason="end_user_offboarded")
            await session.commit()  # durable point "connection deleted"
        if end_user.owns_group and end_user.fivetran_group_id is not None:
            try:
                await client.delete_group(end_user.fivetran_group_id)
            except FivetranNotFound:
                pass
            end_user.fivetran_group_id = None
            end_user.owns_group = False
    except FivetranError as exc:
        end_user.offboarding_error = f"fivetran_{exc.status or 'unavailable'}"[:200]
        end_user.updated_at = utcnow()
        await session.commit()
        log.warning(
            "offboarding paused: Fivetran failed",
            extra={"end_user_id": end_user.id, "fivetran_status": exc.status},
        )
        return False
    now = utcnow()
    end_user.offboarding_state = OFFBOARDED
    end_user.offboarding_error = None
    end_user.deleted_at = now
    end_user.updated_at = now
    await session.flush()
    return True


async def resume_offboarding(session: AsyncSession, app_state: AppState) -> int:
    """Finish every offboarding left in progress (startup / workers). Returns how many."""
    rows = list(
        (
            await session.scalars(select(EndUser).where(EndUser.offboarding_state == OFFBOARDING))
        ).all()
    )
    done = 0
    for row in rows:
        if await run_offboarding(session, app_state, row):
            done += 1
            await session.commit()
    return done
