"""``POST /v1/connections``: create a credentials (or Connect Card) connection, under the
``Idempotency-Key`` protocol (:func:`app.kit.idempotency.run_create`).

A retry with the same key after a Fivetran failure finishes the connection the first attempt
committed (``handle.resume_id``) instead of starting a second one.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import Caller
from app.connections import service as conn_service
from app.connections.schemas import ConnectionCreate, ConnectionOut
from app.kit import idempotency
from app.state import AppState

SCOPE = "POST /v1/connections"


async def create_connection_idempotent(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    body: ConnectionCreate,
    idempotency_key: str | None,
) -> JSONResponse:
    """The new (or finished) connection as a ``201`` answer; a replay answers the stored one."""

    async def create(handle: idempotency.IdempotencyHandle) -> tuple[JSONResponse, Any]:
        if handle.resume_id is not None:
            conn, _ = await conn_service.get_connection(session, caller, handle.resume_id)
            await conn_service.claim_for_resume(session, conn)
            await conn_service.resume_connection(session, app_state, conn)
        else:
            conn = await conn_service.create_credentials_connection(
                session,
                app_state,
                caller=caller,
                end_user_external_id=body.end_user,
                service=body.service,
                config=body.config,
                credentials=body.credentials,
                auth_method=body.auth_method,
                idempotency=handle,
            )
        out = ConnectionOut.of(conn, body.end_user).dump()
        return JSONResponse(out, status_code=201), out

    return await idempotency.run_create(
        session,
        caller_id=caller.key_id,
        scope=SCOPE,
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        ttl_hours=app_state.settings.api.idempotency_ttl_hours,
        create=create,
    )
