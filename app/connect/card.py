"""Fivetran's Connect Card, for the services nothing else reaches (issue #12, part 4).

Some services Fivetran authorizes only through its own Connect Card (xero, slack, mailchimp,
google_drive …): its API takes neither an ``auth`` block nor credential fields for them.
They are still onboarded through our API:

1. ``POST /v1/connections {end_user, service, config}`` creates the connection at Fivetran
   (paused, without auth, no setup tests) through the ordinary create path (idempotency,
   ambiguous-create lookup); it waits in ``authorizing``.
2. ``POST /v1/connections/{id}/connect-card {return_to}`` validates ``return_to`` against the
   allow-list (as connect sessions do), mints a single-use 256-bit token (only its SHA-256 is
   stored, valid ``connect.card_ttl_seconds``) bound to this connection, and asks Fivetran for
   a card whose ``redirect_uri`` is our own ``/connect-card/return/{token}``. The answer is
   Fivetran's card URI. A newer card supersedes the older ones of the same connection.
3. After the setup Fivetran sends the browser to that URI (adding ``id=<connection id>``).
   The token must be known, pending, unexpired and — when ``id`` is given — belong to that
   Fivetran connection; anything else is a static error page and changes nothing. The token
   is consumed with one conditional ``UPDATE`` (single use, also across replicas), the
   connection is read at Fivetran and mapped (:func:`complete_connect_card`: schema policy +
   un-pause → ``connected``, else ``setup_failed``; events emitted), then ``303`` to the stored
   ``return_to`` with ``status`` (``connected`` | ``error``), ``connection_id`` and an
   ``error`` code.

The same card re-authorizes a ``broken`` card connection.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller
from app.connect.models import ConnectCardLink
from app.connect.origins import validate_return_to, with_query
from app.connections import states
from app.connections.models import Connection
from app.connections.service import CONNECT_CARD, complete_connect_card
from app.db import new_id, utcnow
from app.end_users.models import EndUser
from app.errors import AppError, Conflict, InvalidInput, UpstreamError
from app.fivetran.errors import FivetranError, fivetran_problem
from app.state import AppState

log = logging.getLogger("pbf.connect")

RETURN_PATH = "/connect-card/return/"
#: States a card may be issued in: waiting for the card, failed setup, or to re-authorize.
CARD_STATES = frozenset({states.AUTHORIZING, states.SETUP_FAILED, states.BROKEN, states.CONNECTED})


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class IssuedCard:
    connection_id: str
    connect_card_url: str
    expires_at: datetime


@dataclass
class CardReturn:
    """What the browser gets: a ``303`` to ``location`` or the static page ``page``."""

    location: str | None = None
    page: str | None = None
    status_code: int = 303
    back: str | None = None


async def issue_card(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    conn: Connection,
    end_user: EndUser,
    return_to: str,
    hide_setup_guide: bool | None,
) -> IssuedCard:
    """Ask Fivetran for a Connect Card returning to our callback; store the hashed token."""
    settings = app_state.settings
    target = validate_return_to(settings, return_to)
    if conn.auth_method != CONNECT_CARD:
        raise InvalidInput(
            f"Connection '{conn.id}' is authorized with {conn.auth_method}, not Fivetran's "
            "Connect Card",
            code="not_a_card_connection",
            field="connection_id",
        )
    if conn.fivetran_connection_id is None or conn.state not in CARD_STATES:
        raise Conflict(
            f"A '{conn.state}' connection cannot be authorized by card now",
            code="connection_not_ready",
        )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + timedelta(seconds=settings.connect.card_ttl_seconds)
    try:
        data = await app_state.fivetran.connect_card(
            conn.fivetran_connection_id,
            redirect_uri=f"{settings.public_base_url}{RETURN_PATH}{token}",
            hide_setup_guide=hide_setup_guide,
        )
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    card = (data.get("connect_card") or {}).get("uri") if isinstance(data, dict) else None
    if not isinstance(card, str) or not card.startswith(("https://", "http://")):
        raise UpstreamError(
            "Fivetran answered without a Connect Card URI", code="fivetran_bad_response"
        )
    # Only the newest card of a connection comes back: older pending ones stop working.
    await session.execute(
        update(ConnectCardLink)
        .where(ConnectCardLink.connection_id == conn.id, ConnectCardLink.status == "pending")
        .values(status="superseded")
        .execution_options(synchronize_session=False)
    )
    session.add(
        ConnectCardLink(
            id=new_id("ccl"),
            token_hash=_sha256(token),
            connection_id=conn.id,
            end_user_id=end_user.id,
            caller_key_id=caller.key_id,
            return_to=target,
            status="pending",
            created_at=now,
            expires_at=expires_at,
        )
    )
    await audit.record(
        session,
        action="connection.connect_card",
        target_type="connection",
        target_id=conn.id,
        end_user=end_user.external_id,
        details={"service": conn.service, "state": conn.state},
    )
    await session.commit()
    return IssuedCard(connection_id=conn.id, connect_card_url=card, expires_at=expires_at)


def _back(row: ConnectCardLink, error: str) -> str:
    return with_query(
        row.return_to, {"status": "error", "error": error, "connection_id": row.connection_id}
    )


async def handle_return(
    session: AsyncSession, app_state: AppState, *, token: str, fivetran_id: str | None
) -> CardReturn:
    """Fivetran's card sent the browser back (see module doc). Refusals change nothing."""
    now = utcnow()
    row = await session.scalar(
        select(ConnectCardLink).where(ConnectCardLink.token_hash == _sha256(token))
    )
    if row is None:
        return CardReturn(page="link_invalid", status_code=404)
    if row.status != "pending" or row.consumed_at is not None or row.expires_at <= now:
        return CardReturn(page="link_invalid", status_code=400, back=_back(row, "link_invalid"))
    conn = await session.get(Connection, row.connection_id)
    if conn is None or conn.state == states.DELETED or conn.fivetran_connection_id is None:
        return CardReturn(page="link_invalid", status_code=400)
    if fivetran_id is not None and fivetran_id != conn.fivetran_connection_id:
        # The token of one connection with another connection's id: never trust either.
        log.warning("connect card return for another connection", extra={"link_id": row.id})
        return CardReturn(page="invalid_callback", status_code=400)
    # Single use: the row count of one conditional UPDATE decides (SQLite and PostgreSQL).
    result = await session.execute(
        update(ConnectCardLink)
        .where(
            ConnectCardLink.id == row.id,
            ConnectCardLink.status == "pending",
            ConnectCardLink.consumed_at.is_(None),
            ConnectCardLink.expires_at > now,
        )
        .values(status="consumed", consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.rollback()
        return CardReturn(page="link_invalid", status_code=400)
    await session.commit()
    error: str | None = None
    try:
        await complete_connect_card(session, app_state, conn)
    except AppError as exc:
        await session.rollback()
        log.warning(
            "connect card return could not be completed",
            extra={"connection_id": conn.id, "code": exc.code},
        )
        error = "connection_failed" if exc.code == "connection_gone" else "fivetran_error"
    else:
        if conn.state != states.CONNECTED:
            error = "setup_failed"
    await session.execute(
        update(ConnectCardLink)
        .where(ConnectCardLink.id == row.id)
        .values(status="failed" if error else "completed", error=error)
        .execution_options(synchronize_session=False)
    )
    await session.commit()
    params = {"status": "error" if error else "connected", "connection_id": row.connection_id}
    if error:
        params["error"] = error
    return CardReturn(location=with_query(row.return_to, params))
