"""Reconciliation: refresh connections whose state may be wrong, within a request budget.

Webhooks can be lost (our endpoint down for longer than Fivetran retries, a webhook disabled,
a misconfigured secret). Reconciliation makes state right anyway: each pass refreshes, through
onboarding's ``refresh_from_fivetran`` (one ``GET /v1/connections/{id}``),

* connections in a live state whose state we have not learned from Fivetran (webhook,
  refresh, or onboarding's own update of the row) for ``reconcile_stale_after_seconds``,
  least recently reconciled first;
* connections stuck in ``creating`` (unknown outcome) for longer than a grace period, through
  onboarding's ``resume_connection`` (finds or finishes the Fivetran connection).

Budget: at most ``reconcile_budget_share × fivetran.hourly_request_budget`` requests per
rolling hour, and per pass at most the share of one ``reconcile_interval_seconds``. What is
counted is every request actually sent (client retries and a resume's several calls
included), recorded in ``reconcile_spend`` so several workers share one allowance.
On PostgreSQL one worker reconciles at a time (advisory lock); a 429 from Fivetran ends the
pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.connections import service as onboarding
from app.connections.models import Connection
from app.events.freshness import mark_fresh
from app.events.models import ConnectionFreshness, ReconcileSpend
from app.fivetran.client import counting_requests
from app.fivetran.errors import FivetranTooManyRequests
from app.state import AppState

log = logging.getLogger("pbf.events.reconcile")

_LOCK_KEY = 0x70BF_2EC0
#: A ``creating`` connection younger than this may still be in its create request.
CREATING_GRACE = timedelta(minutes=5)
LIVE_STATES = ("connected", "broken", "paused", "setup_failed")


def pass_allowance(settings: Settings, used_last_hour: int) -> int:
    """Requests this pass may spend."""
    hourly = settings.events.reconcile_budget_share * settings.fivetran.hourly_request_budget
    per_pass = max(1, math.ceil(hourly * settings.events.reconcile_interval_seconds / 3600))
    return max(0, min(per_pass, math.floor(hourly) - used_last_hour))


async def candidates(
    session: AsyncSession, *, settings: Settings, now: datetime, limit: int
) -> list[str]:
    """Connection ids to reconcile now, most overdue first."""

    stale_before = now - timedelta(seconds=settings.events.reconcile_stale_after_seconds)
    retry_before = now - timedelta(seconds=settings.events.reconcile_interval_seconds)
    fresh = ConnectionFreshness
    live = (
        Connection.state.in_(LIVE_STATES)
        & Connection.fivetran_connection_id.is_not(None)
        # Onboarding's own writes (create, PATCH, ?refresh=true) also come from Fivetran.
        & (Connection.updated_at < stale_before)
        & or_(fresh.last_seen_at.is_(None), fresh.last_seen_at < stale_before)
    )
    creating = (
        (Connection.state == "creating")
        & (Connection.updated_at < now - CREATING_GRACE)
        & or_(fresh.last_reconciled_at.is_(None), fresh.last_reconciled_at < retry_before)
    )
    rows = await session.scalars(
        select(Connection.id)
        .outerjoin(fresh, fresh.connection_id == Connection.id)
        .where(Connection.deleted_at.is_(None), or_(live, creating))
        .order_by(
            fresh.last_reconciled_at.is_not(None),
            fresh.last_reconciled_at,
            Connection.created_at,
        )
        .limit(limit)
    )
    return list(rows.all())


async def used_last_hour(session: AsyncSession, *, now: datetime) -> int:
    """Fivetran requests reconciliation sent in the last hour (every worker)."""
    spent = await session.scalar(
        select(func.coalesce(func.sum(ReconcileSpend.requests), 0)).where(
            ReconcileSpend.spent_at > now - timedelta(hours=1)
        )
    )
    return int(spent or 0)


def _record_spend(session: AsyncSession, at: datetime, requests: int) -> None:
    if requests > 0:
        session.add(ReconcileSpend(spent_at=at, requests=requests))


async def reconcile_connection(
    session: AsyncSession, app_state: AppState, connection_id: str
) -> str:
    """Refresh one connection through onboarding; returns what was done.

    Onboarding may commit inside (its named durable points), so the caller owns a plain
    session and commits at the end.
    """
    connection = await session.get(Connection, connection_id)
    if connection is None or connection.deleted_at is not None:
        return "gone"
    if connection.state == "creating":
        await onboarding.resume_connection(session, app_state, connection)
        return "resumed"
    await onboarding.refresh_from_fivetran(session, app_state, connection)
    return "refreshed"


async def reconcile(
    sessionmaker: async_sessionmaker[AsyncSession],
    app_state: AppState,
    *,
    settings: Settings,
    now: Callable[[], datetime],
) -> int:
    """One pass; returns the number of connections reconciled."""

    async with sessionmaker() as lock_session, lock_session.begin():
        if lock_session.get_bind().dialect.name == "postgresql":
            got = await lock_session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}
            )
            if not got:
                return 0
        async with sessionmaker() as session:
            started = now()
            allowance = pass_allowance(settings, await used_last_hour(session, now=started))
            if allowance <= 0:
                log.info("reconciliation budget spent for this hour")
                return 0
            ids = await candidates(session, settings=settings, now=started, limit=allowance)
            await session.execute(
                delete(ReconcileSpend).where(
                    ReconcileSpend.spent_at <= started - timedelta(hours=1)
                )
            )
            await session.commit()
        done = 0
        spent = 0
        for connection_id in ids:
            if spent >= allowance:
                log.info("reconciliation pass stopped: its share of the budget is spent")
                break
            sent = [0]
            try:
                async with sessionmaker() as session:
                    try:
                        with counting_requests() as sent:
                            action = await reconcile_connection(session, app_state, connection_id)
                        spent += sent[0]
                        await mark_fresh(
                            session, connection_id, now=now(), source="reconcile", reconciled=True
                        )
                        _record_spend(session, now(), sent[0])
                        await session.commit()
                    except BaseException:
                        await session.rollback()
                        raise
                done += 1
                log.info(
                    "connection reconciled",
                    extra={"connection_id": connection_id, "action": action},
                )
            except FivetranTooManyRequests:
                await _record_error(sessionmaker, connection_id, now(), "rate_limited", sent[0])
                log.warning("reconciliation stopped: Fivetran rate limit")
                break
            except Exception as exc:
                spent += sent[0]
                await _record_error(sessionmaker, connection_id, now(), type(exc).__name__, sent[0])
                log.warning(
                    "connection reconciliation failed",
                    extra={"connection_id": connection_id, "error_type": type(exc).__name__},
                )
        return done


async def _record_error(
    sessionmaker: async_sessionmaker[AsyncSession],
    connection_id: str,
    at: datetime,
    error: str,
    requests: int,
) -> None:
    async with sessionmaker() as session, session.begin():
        await mark_fresh(
            session, connection_id, now=at, source="reconcile", reconciled=True, error=error
        )
        _record_spend(session, at, requests)


def reconciler(
    app_state: AppState,
    *,
    settings: Settings | None = None,
    sessionmaker: async_sessionmaker[AsyncSession] | None = None,
) -> Callable[[Callable[[], datetime]], Awaitable[int]]:
    """The reconciliation pass the events worker runs on its schedule (it knows nothing of
    connections: it is handed this function). ``settings``/``sessionmaker`` default to the
    app's."""

    async def run(now: Callable[[], datetime]) -> int:
        return await reconcile(
            sessionmaker or app_state.sessionmaker,
            app_state,
            settings=settings or app_state.settings,
            now=now,
        )

    return run
