"""Post-consent configuration on the connection side (ARCHITECTURE §3, §5).

A provider with a picker (``pickers.yaml``: account ids, properties, sites) does not create
the connection at Fivetran right after consent. The callback stores the tokens (committed, as
always) and parks the connection in ``needs_configuration``
(:func:`await_configuration`; event ``connection.needs_configuration``). The caller then
submits the choice (validated by :mod:`app.connect.configure` against the choices fetched from
the provider) and :func:`create_configured` creates the connection at Fivetran through the
usual create path (durable ``creating`` first, deterministic schema, ambiguous-create lookup,
tokens handed off). On a connection that exists at Fivetran :func:`change_selection` PATCHes
the new choice onto its ``config``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.connections import service as svc
from app.connections import states
from app.connections.models import Connection
from app.db import utcnow
from app.end_users import service as end_user_service
from app.errors import AppError, Conflict, NotFound
from app.fivetran.errors import FivetranError, FivetranNotFound, fivetran_problem
from app.kit.idempotency import IdempotencyHandle
from app.providers.tokens import TokenResult
from app.state import AppState

log = logging.getLogger("pbf.onboarding")

#: States in which the selection of a connection that exists at Fivetran may change.
RECONFIGURABLE = (states.CONNECTED, states.BROKEN, states.SETUP_FAILED, states.PAUSED)


async def await_configuration(
    session: AsyncSession, app_state: AppState, *, connection: Connection, token_result: TokenResult
) -> Connection:
    """Park a freshly authorized connection in ``needs_configuration`` (commits).

    Called by the OAuth callback after the tokens are stored and committed, instead of
    :func:`~app.connections.service.complete_oauth`. Keeps the provider metadata the Fivetran
    mapping reads later, like ``complete_oauth`` does."""
    conn = connection
    end_user = await end_user_service.get_end_user_by_id(session, conn.end_user_id)
    if conn.state == states.DELETED or end_user.offboarding_state is not None:
        await app_state.vault.delete(session, owner_type=svc.OWNER, owner_id=conn.id)
        await session.commit()
        raise NotFound("Connection not found", code="connection_not_found")
    conn.provider_key = token_result.provider_key or conn.provider_key
    conn.oauth_metadata = dict(token_result.metadata or {})
    conn.updated_at = utcnow()
    await states.transition(
        session, conn, states.NEEDS_CONFIGURATION, reason="awaiting_configuration"
    )
    await session.commit()
    return conn


async def create_configured(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    choice: dict[str, Any],
    end_user_external_id: str,
    idempotency: IdempotencyHandle | None = None,
) -> Connection:
    """``needs_configuration`` → ``creating`` → created at Fivetran with ``choice`` in its
    ``config`` (the validated picker fields plus the picker's constant config).

    The exact create body is built (and validated against Fivetran's definition) before
    anything is written; a 422 leaves the connection in ``needs_configuration``."""
    if conn.state != states.NEEDS_CONFIGURATION:
        raise Conflict(
            f"The connection is '{conn.state}', not 'needs_configuration'",
            code="invalid_connection_state",
        )
    end_user = await end_user_service.get_end_user_by_id(session, conn.end_user_id)
    source = app_state.sources.get(conn.service)
    config = {**(conn.config or {}), **choice}
    token_result = await svc.stored_token_result(session, app_state, conn)
    parts = await svc.oauth_parts(session, app_state, conn, token_result)
    conn.config = config
    try:
        conn.group_id = await end_user_service.group_for_connection(
            session, app_state, end_user, conn.service
        )
    except AppError as exc:
        if exc.status not in (429, 502, 503, 504):
            raise
        # The choice is made and the tokens are stored: keep it resumable (resume_connection
        # resolves the group first), as complete_oauth does.
        moved = await states.transition(session, conn, states.CREATING, reason="group_unavailable")
        if not moved:
            raise _in_progress() from exc
        await session.commit()
        raise
    # The exact body, validated: a 422 here comes before anything is written.
    body = svc.create_body(source, conn, {**config, **parts.config}, auth=parts.auth)
    if idempotency is not None:
        await idempotency.remember_resource(session, conn.id)
    await audit.record(
        session,
        action="connection.configure",
        target_type="connection",
        target_id=conn.id,
        end_user=end_user_external_id,
        details={"service": conn.service, "fields": sorted(choice)},
    )
    moved = await states.transition(session, conn, states.CREATING, reason="configured")
    if not moved:  # another request configured it meanwhile (row re-read under a lock)
        await session.rollback()
        raise _in_progress()
    await session.commit()  # durable point: config + state creating before the Fivetran call
    await svc.create_remote(session, app_state, conn, body=body, resumed=False)
    return conn


def _in_progress() -> Conflict:
    return Conflict("This connection is already being configured", code="configuration_in_progress")


async def change_selection(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    choice: dict[str, Any],
    end_user_external_id: str,
) -> Connection:
    """PATCH a new choice onto the ``config`` of a connection that exists at Fivetran."""
    if conn.fivetran_connection_id is None or conn.state not in RECONFIGURABLE:
        raise Conflict(
            f"The selection of a '{conn.state}' connection cannot be changed",
            code="invalid_connection_state",
        )
    try:
        data = await app_state.fivetran.update_connection(
            conn.fivetran_connection_id, {"config": dict(choice)}
        )
    except FivetranNotFound as exc:
        await states.transition(session, conn, states.DELETED, reason="deleted_at_fivetran")
        await session.commit()
        raise NotFound(
            "The connection no longer exists at Fivetran", code="connection_gone"
        ) from exc
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    conn.config = {**(conn.config or {}), **choice}
    conn.updated_at = utcnow()
    if isinstance(data, dict):
        svc.apply_fivetran_status(conn, data)
    await audit.record(
        session,
        action="connection.configure",
        target_type="connection",
        target_id=conn.id,
        end_user=end_user_external_id,
        details={"service": conn.service, "fields": sorted(choice), "changed": True},
    )
    await session.commit()
    return conn
