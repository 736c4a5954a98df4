"""Terminal states for connect sessions whose callback never finished.

The callback consumes the OAuth ``state`` durably before it exchanges the code, so a process
killed mid-callback leaves a ``pending`` session with a consumed flow — which the expiry sweep
deliberately skips while a callback may still be running. After :data:`CALLBACK_GRACE` (the
sweep passes ``connect.callback_grace_seconds``) no callback can still be running, and
:func:`settle_interrupted_sessions` decides:

* the flow never stored tokens (``consumed``): the session fails with ``interrupted`` and the
  reserved connection is failed like any OAuth failure;
* the tokens are stored (``exchanged``): the connection owns them. Still ``authorizing`` (the
  crash came before the create) → moved to ``creating`` so :func:`resume_creating` finishes
  it (to ``needs_configuration`` for sources with a post-consent choice: session
  ``completed``); ``creating`` → left to the resume; ``connected`` → session ``completed``; anything
  else → session ``failed``.

It also fails pending sessions whose minting API key has been revoked (sessions die with
their key). Each settled session emits exactly one ``connect_session.*`` event (flush only).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.models import ApiKey
from app.connect.models import ConnectSession, OAuthFlow
from app.connect.outcomes import emit_outcome, fail_session, shred_verifier
from app.connections import states
from app.connections.models import Connection
from app.db import utcnow
from app.state import AppState

log = logging.getLogger("pbf.connect")

#: Longer than any callback can run (token exchange and Fivetran calls have timeouts).
CALLBACK_GRACE = timedelta(minutes=10)


async def settle_interrupted_sessions(
    session: AsyncSession,
    app_state: AppState,
    *,
    now: datetime | None = None,
    grace: timedelta = CALLBACK_GRACE,
    limit: int = 200,
) -> int:
    """Settle pending sessions (see module doc); returns how many reached a terminal state."""
    now = now or utcnow()
    settled = 0
    stmt = (
        select(ConnectSession, OAuthFlow)
        .join(OAuthFlow, OAuthFlow.session_id == ConnectSession.id)
        .where(
            ConnectSession.status == "pending",
            OAuthFlow.consumed_at.is_not(None),
            OAuthFlow.consumed_at <= now - grace,
        )
        .order_by(OAuthFlow.consumed_at)
        .limit(limit)
    )
    for row, flow in (await session.execute(stmt)).all():
        if row.status != "pending":  # two flows of one session: settled already
            continue
        if await _settle(session, app_state, row, flow):
            settled += 1
    revoked = (
        select(ConnectSession)
        .join(ApiKey, ApiKey.id == ConnectSession.caller_key_id)
        .where(ConnectSession.status == "pending", ApiKey.revoked_at.is_not(None))
        .limit(limit)
    )
    for row in (await session.scalars(revoked)).all():
        flows = (
            await session.scalars(select(OAuthFlow).where(OAuthFlow.session_id == row.id))
        ).all()
        if any(f.consumed_at is not None and f.consumed_at > now - grace for f in flows):
            continue  # a callback may be running: it checks the key itself
        await fail_session(session, row=row, flow=None, error_code="key_revoked")
        for f in flows:
            await shred_verifier(session, app_state, f, flush=False)
        settled += 1
    await session.flush()
    if settled:
        log.info("interrupted connect sessions settled", extra={"count": settled})
    return settled


async def _settle(
    session: AsyncSession, app_state: AppState, row: ConnectSession, flow: OAuthFlow
) -> bool:
    connection = await session.get(Connection, row.connection_id)
    if flow.status in ("consumed", "started") or connection is None:
        await fail_session(session, row=row, flow=flow, error_code="interrupted", oauth_failed=True)
        await shred_verifier(session, app_state, flow, flush=False)
        return True
    provider = app_state.providers.find(row.provider_key)
    picker = provider is not None and provider.spec.picker is not None
    if connection.state == states.AUTHORIZING and not row.reauthorization and picker:
        # Tokens stored, choice pending (account pickers): wait for the caller's choice.
        await states.transition(
            session, connection, states.NEEDS_CONFIGURATION, reason="callback_interrupted"
        )
    elif connection.state == states.AUTHORIZING and not row.reauthorization:
        # Tokens stored, create never started: hand it to the resume (R: no lost token).
        await states.transition(session, connection, states.CREATING, reason="callback_interrupted")
        return False
    if connection.state == states.CREATING:
        return False  # resume_creating finishes it; the next sweep settles the session
    if connection.state in (states.CONNECTED, states.NEEDS_CONFIGURATION):
        row.status = "completed"
        row.completed_at = utcnow()
        flow.status = "completed"
        await emit_outcome(session, row, connection_id=connection.id)
        return True
    code = "setup_failed" if connection.state == states.SETUP_FAILED else "connection_failed"
    await fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
    return True
