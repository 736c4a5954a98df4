"""How a connect session ends, for every flow (OAuth 2.0 and OAuth 1.0a callbacks, the
start, the expiry sweep and crash recovery).

The browser's answer (:class:`BrowserResult`: a ``303`` back to the stored ``return_to`` with
only ``session_id``, ``status`` and ``connection_id`` or an allow-listed ``error`` (R15), or a
static page), the session's failure or completion with its ``connect_session.*`` event, the
flow's secret shredded, and the single-use ``state`` consumed (R2).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.connect.identity import IDENTITY_ERROR_CODES
from app.connect.models import ConnectSession, OAuthFlow
from app.connect.origins import with_query
from app.connections.models import Connection
from app.connections.service import fail_oauth
from app.db import utcnow
from app.errors import AppError
from app.events.outbox import emit
from app.providers.errors import ALLOWED_ERROR_CODES
from app.state import AppState

log = logging.getLogger("pbf.connect")


#: Vault owner of a flow's secret (PKCE verifier, OAuth 1.0a request-token secret).
FLOW_OWNER = "oauth_flow"

#: Error codes a browser may be sent back with (on top of the provider allow-list).
SESSION_ERROR_CODES = frozenset(
    ALLOWED_ERROR_CODES
    | {
        "issuer_mismatch",
        "expired",
        "setup_failed",
        "fivetran_error",
        "internal_error",
        "vault_error",
        "connection_failed",
        "key_revoked",
        "interrupted",
    }
    | IDENTITY_ERROR_CODES
)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def session_code(code: str) -> str:
    return code if code in SESSION_ERROR_CODES else "provider_error"


@dataclass
class BrowserResult:
    """What the browser gets: a ``303`` (``location``) or a static page (``page`` reason)."""

    location: str | None = None
    page: str | None = None
    status_code: int = 303
    set_binding_cookie: str | None = None
    clear_binding_cookie: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    #: the error page's link back: a known session's stored ``return_to`` (never request data)
    back: str | None = None

    @classmethod
    def error_page(
        cls, reason: str, status_code: int = 400, *, row: ConnectSession | None = None
    ) -> BrowserResult:
        return cls(page=reason, status_code=status_code, back=back_link(row, reason))


def back_link(row: ConnectSession | None, error: str) -> str | None:
    """The stored, validated ``return_to`` of ``row`` with ``status=error`` and ``error``
    (one of our page reasons), or ``None`` without a known session (R22)."""
    if row is None:
        return None
    return with_query(row.return_to, {"session_id": row.id, "status": "error", "error": error})


def single_params(items: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """The query as a dict; ``None`` when any parameter is repeated (parameter pollution:
    signed callbacks and metadata must not depend on which copy a parser picks)."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            return None
        out[key] = value
    return out


async def fail_session(
    session: AsyncSession,
    *,
    row: ConnectSession,
    flow: OAuthFlow | None,
    error_code: str,
    oauth_failed: bool = True,
) -> None:
    """Mark the session (and flow) failed and emit ``connect_session.failed``. With
    ``oauth_failed`` the reserved connection is told too (not when the OAuth leg succeeded
    and only the Fivetran side failed: onboarding keeps its own state and reason then)."""
    code = session_code(error_code)
    now = utcnow()
    if flow is not None:
        flow.status = "failed"
        flow.error = code
    if row.status == "pending":
        row.status = "failed"
        row.error = code
        row.completed_at = now
        connection = await session.get(Connection, row.connection_id)
        if connection is not None and oauth_failed:
            await fail_oauth(session, connection, error_code=code)
        await emit_outcome(session, row, connection_id=row.connection_id, error=code)
    await session.flush()


async def emit_outcome(
    session: AsyncSession, row: ConnectSession, *, connection_id: str, error: str | None = None
) -> None:
    """Emit ``connect_session.failed`` (with ``error``) or, without one,
    ``connect_session.completed`` for ``row``."""
    data: dict[str, Any] = {
        "session_id": row.id,
        "service": row.service,
        "connection_id": connection_id,
    }
    if error is not None:
        data["error"] = error
    data["reauthorization"] = row.reauthorization
    await emit(
        session,
        kind="connect_session.failed" if error is not None else "connect_session.completed",
        data=data,
        connection_id=connection_id,
        end_user_external_id=row.end_user_external_id,
    )


def back_to_app(row: ConnectSession, *, status: str, **params: str) -> BrowserResult:
    query = {"session_id": row.id, "status": status, **params}
    return BrowserResult(location=with_query(row.return_to, query), clear_binding_cookie=True)


async def fail_flow(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    error_code: str,
) -> None:
    """A callback refused after its state was consumed: fail the session, shred the verifier."""
    await fail_session(session, row=row, flow=flow, error_code=error_code)
    await shred_verifier(session, app_state, flow)


async def consume_state(
    session: AsyncSession, state: str | None
) -> tuple[ConnectSession, OAuthFlow] | BrowserResult:
    """R2: consume the flow's single-use ``state`` atomically and commit (a replay must fail
    even if we crash from here on); the session and flow it belongs to."""
    if not state:
        return BrowserResult.error_page("invalid_state")
    state_hash = sha256_hex(state)
    now = utcnow()
    # The row count decides who owns this callback.
    result = await session.execute(
        update(OAuthFlow)
        .where(
            OAuthFlow.state_hash == state_hash,
            OAuthFlow.consumed_at.is_(None),
            OAuthFlow.expires_at > now,
        )
        .values(consumed_at=now, status="consumed")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        log.info("oauth callback with unknown, used or expired state")
        return BrowserResult.error_page("invalid_state")
    # Durable point "state consumed".
    await session.commit()

    flow = await session.scalar(select(OAuthFlow).where(OAuthFlow.state_hash == state_hash))
    assert flow is not None
    row = await session.get(ConnectSession, flow.session_id)
    assert row is not None
    return row, flow


async def finish_with_connection(
    session: AsyncSession,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    complete: Callable[[], Awaitable[Connection]],
    what: str = "connection",
) -> BrowserResult:
    """Run ``complete`` (the Fivetran create or re-authorization after the tokens' commit)
    and end the session by its outcome: completed when the connection is ``connected``,
    failed with an allow-listed code otherwise (OAuth 2.0 and OAuth 1.0a flows alike)."""
    row_id, flow_id = row.id, flow.id
    try:
        connection = await complete()
    except AppError as exc:
        row, flow = await after_rollback(session, row_id, flow_id)
        code = exc.code if exc.code in SESSION_ERROR_CODES else "fivetran_error"
        await fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
        log.warning(
            f"{what} could not be completed after consent",
            extra={"session_id": row.id, "error": exc.code},
        )
        return back_to_app(row, status="error", error=code)
    except Exception as exc:
        row, flow = await after_rollback(session, row_id, flow_id)
        await fail_session(
            session, row=row, flow=flow, error_code="internal_error", oauth_failed=False
        )
        log.error(
            f"{what} completion crashed",
            extra={"session_id": row.id, "error_type": type(exc).__name__},
        )
        return back_to_app(row, status="error", error="internal_error")
    if connection.state == "connected":
        row.status = "completed"
        row.completed_at = utcnow()
        flow.status = "completed"
        await emit_outcome(session, row, connection_id=connection.id)
        await session.flush()
        return back_to_app(row, status="connected", connection_id=connection.id)
    code = "setup_failed" if connection.state == "setup_failed" else "connection_failed"
    await fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
    return back_to_app(row, status="error", error=code, connection_id=connection.id)


async def after_rollback(
    session: AsyncSession, row_id: str, flow_id: str
) -> tuple[ConnectSession, OAuthFlow]:
    """Roll back a failed step and reload the session and flow rows (tokens stay stored)."""
    await session.rollback()
    row = await session.get(ConnectSession, row_id, populate_existing=True)
    flow = await session.get(OAuthFlow, flow_id, populate_existing=True)
    assert row is not None and flow is not None
    return row, flow


async def shred_verifier(
    session: AsyncSession, app_state: AppState, flow: OAuthFlow, *, flush: bool = True
) -> None:
    # Every secret of the flow: the PKCE verifier, or an OAuth 1.0a request token's secret.
    await app_state.vault.delete(session, owner_type=FLOW_OWNER, owner_id=flow.id)
    if flush:
        await session.flush()
