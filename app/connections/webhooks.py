"""Inbound Fivetran webhooks: verify, dedupe, map onto our connection state.

Security: the request carries no API key; it is authenticated by ``X-Fivetran-Signature-256``
(hex HMAC-SHA256 of the raw body with the webhook secret, compared case-insensitively in
constant time). A missing or wrong signature is a 401 and nothing is written.

Idempotency: every accepted webhook leaves a ``fivetran_webhook_receipts`` row under a unique
``dedupe_key`` — for sync events ``sha256(event|connector|sync_id|status)``, for the others
``sha256(raw body)``. The receipt is inserted *before* the state change, in the same
transaction, so a concurrent duplicate waits on the unique index and then is acknowledged
as a duplicate without effect. The connection row is then locked (``FOR UPDATE``; on SQLite
the receipt insert already holds the write lock), so two webhooks of one connection apply
one after the other, and timestamps never move backwards.

Mapping (through onboarding's ``states.transition``, which records and emits):

* ``sync_start`` → ``sync_state=syncing`` (ignored when that sync already ended).
* ``sync_end`` → ``sync_state=scheduled`` (``rescheduled`` for ``RESCHEDULED``);
  ``SUCCESSFUL`` advances ``last_sync_succeeded_at`` and emits ``connection.sync_succeeded``;
  ``FAILED``/``FAILURE_WITH_TASK`` advance ``last_sync_failed_at`` and emit
  ``connection.sync_failed``. A timestamp never moves backwards (late deliveries).
* ``connection_failure`` → ``setup_state=broken``; ``connected``/``setup_failed`` → ``broken``.
* ``connection_successful`` → ``setup_state=connected``; ``broken``/``setup_failed`` →
  ``connected``.

Connections still being created (``pending``/``authorizing``/``creating``) are left to
onboarding's own request (or its resume/reconciliation): the webhook is acknowledged as
``deferred_in_flight`` and changes nothing.
* ``pause_connector`` → ``paused``; ``resume_connector`` → ``connected`` (or ``broken``;
  ``setup_failed`` when it never passed its setup tests).
* ``delete_connector`` → ``deleted``.

Unknown connections (e.g. Fivetran's test webhook for ``_connection_1``) are acknowledged
and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.connections import states
from app.connections.models import Connection
from app.connections.service import find_by_fivetran_id
from app.connections.states import resume_target
from app.db import new_id, utcnow
from app.end_users.models import EndUser
from app.errors import BadRequest, Conflict, Unauthorized
from app.events.freshness import mark_fresh
from app.events.kinds import FIVETRAN_WEBHOOK_EVENTS
from app.events.models import FivetranWebhookReceipt
from app.events.outbox import emit
from app.events.signing import verify_fivetran_signature, webhook_secret
from app.fivetran.timestamps import parse_fivetran_time
from app.state import AppState

log = logging.getLogger("pbf.events.webhooks")

SIGNATURE_HEADER = "X-Fivetran-Signature-256"
_SUCCESS = {"SUCCESSFUL"}
_IN_FLIGHT = ("pending", "authorizing", "creating")
_FAILURE = {"FAILED", "FAILURE_WITH_TASK"}


def _dedupe_key(payload: dict[str, Any], body: bytes) -> str:
    sync_id = payload.get("sync_id")
    if sync_id:
        raw = payload.get("data")
        status = raw.get("status") if isinstance(raw, dict) else None
        material = "|".join(
            str(x) for x in ("sync", payload.get("event"), _connector_id(payload), sync_id, status)
        )
        return hashlib.sha256(material.encode()).hexdigest()
    return hashlib.sha256(body).hexdigest()


def _connector_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("connector_id") or payload.get("connection_id")
    return str(value) if value else None


async def receive_fivetran_webhook(
    session: AsyncSession,
    app_state: AppState,
    *,
    settings: Settings,
    body: bytes,
    signature: str | None,
) -> dict[str, Any]:
    """Verify and apply one webhook; returns ``{status, outcome}`` for the 200 response."""
    secret = webhook_secret(settings)
    if not signature:
        _count(app_state, "-", "rejected")
        raise Unauthorized(
            f"Missing {SIGNATURE_HEADER}",
            code="missing_signature",
            headers={"WWW-Authenticate": "Signature"},
        )
    if secret is None or not verify_fivetran_signature(signature, body, secret):
        _count(app_state, "-", "rejected")
        raise Unauthorized(
            "Invalid webhook signature",
            code="invalid_signature",
            headers={"WWW-Authenticate": "Signature"},
        )
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("Webhook body is not JSON", code="invalid_webhook") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str):
        raise BadRequest("Webhook body has no 'event'", code="invalid_webhook")

    event: str = payload["event"]
    connector_id = _connector_id(payload)
    receipt = FivetranWebhookReceipt(
        id=new_id("whr"),
        dedupe_key=_dedupe_key(payload, body),
        event=event[:64],
        fivetran_connection_id=connector_id[:100] if connector_id else None,
        sync_id=str(payload["sync_id"])[:100] if payload.get("sync_id") else None,
        outcome="received",
        received_at=utcnow(),
    )
    duplicate = await session.scalar(
        select(FivetranWebhookReceipt.id).where(
            FivetranWebhookReceipt.dedupe_key == receipt.dedupe_key
        )
    )
    if duplicate is None:
        # The receipt is the transaction's first write: on SQLite it takes the write lock, on
        # PostgreSQL a concurrent twin waits on the unique index. Either way a race ends in
        # IntegrityError with nothing else written yet, so rolling back loses nothing.
        session.add(receipt)
        try:
            await session.flush()
        except IntegrityError:
            await session.rollback()
            duplicate = "concurrent"
    if duplicate is not None:
        log.info("duplicate fivetran webhook", extra={"event": event, "connector_id": connector_id})
        _count(app_state, event, "duplicate")
        return {"status": "duplicate", "outcome": "duplicate"}

    outcome, connection_id = await _apply(session, app_state, event, payload, connector_id)
    receipt.outcome = outcome
    receipt.connection_id = connection_id
    await session.flush()
    log.info(
        "fivetran webhook applied",
        extra={
            "event": event,
            "connector_id": connector_id,
            "connection_id": connection_id,
            "outcome": outcome,
        },
    )
    _count(app_state, event, outcome)
    return {"status": "accepted", "outcome": outcome}


def _count(app_state: AppState, event: str, outcome: str) -> None:
    metrics = getattr(app_state, "events_metrics", None)
    if metrics is None:
        return
    # Bounded label values: unknown events and outcomes from other states are folded.
    label = event if event in FIVETRAN_WEBHOOK_EVENTS or event == "-" else "other"
    metrics.webhooks.labels(label, outcome.split("_from_")[0]).inc()


async def _find_connection(session: AsyncSession, fivetran_id: str) -> Connection | None:
    return await find_by_fivetran_id(session, fivetran_id)


async def _end_user_external_id(session: AsyncSession, connection: Connection) -> str | None:
    return await session.scalar(
        select(EndUser.external_id).where(EndUser.id == connection.end_user_id)
    )


async def _transition(
    session: AsyncSession, connection: Connection, new_state: str, reason: str
) -> str:
    if connection.state == new_state:
        return "unchanged"
    if not states.can_transition(connection.state, new_state):
        return f"ignored_from_{connection.state}"[:32]
    try:
        changed = await states.transition(session, connection, new_state, reason=reason)
    except Conflict:
        return f"ignored_from_{connection.state}"[:32]
    return "applied" if changed else "unchanged"


async def _apply(
    session: AsyncSession,
    app_state: AppState,
    event: str,
    payload: dict[str, Any],
    connector_id: str | None,
) -> tuple[str, str | None]:
    if not connector_id:
        return "no_connector", None
    connection = await _find_connection(session, connector_id)
    if connection is None:
        log.info(
            "fivetran webhook for an unknown connection",
            extra={"event": event, "connector_id": connector_id},
        )
        return "unknown_connection", None
    # Serialize webhooks of one connection (sync_start and sync_end may arrive together).
    await session.refresh(connection, with_for_update=True)
    if connection.state == "deleted" or connection.deleted_at is not None:
        return "connection_deleted", connection.id
    if connection.state in _IN_FLIGHT:
        # Onboarding is creating it right now (or will resume it); its own request reads
        # Fivetran's answer. Touching the row here would race with that request.
        return "deferred_in_flight", connection.id
    now = utcnow()
    raw_data = payload.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    created = parse_fivetran_time(payload.get("created")) or now
    outcome = "ignored"

    if event == "sync_start":
        outcome = await _sync_start(session, connection, payload, connector_id, created, now)
    elif event == "sync_end":
        outcome = await _sync_end(session, connection, data, created, payload, now)
    elif event == "connection_failure":
        outcome = await _setup_reported(
            session, connection, now, event, "broken", moves_from=("connected", "setup_failed")
        )
    elif event == "connection_successful":
        outcome = await _setup_reported(
            session, connection, now, event, "connected", moves_from=("broken", "setup_failed")
        )
    elif event == "pause_connector":
        outcome = await _transition(session, connection, "paused", "paused at fivetran")
        connection.paused = True
    elif event == "resume_connector":
        if connection.state == "paused":
            target = await resume_target(session, connection)
            outcome = await _transition(session, connection, target, "resumed at fivetran")
        else:
            outcome = "unchanged"
        connection.paused = False
        connection.updated_at = now
    elif event == "delete_connector":
        outcome = await _transition(session, connection, "deleted", "deleted at fivetran")
    await mark_fresh(session, connection.id, now=now, source="webhook")
    await session.flush()
    return outcome, connection.id


async def _setup_reported(
    session: AsyncSession,
    connection: Connection,
    now: datetime,
    event: str,
    setup_state: str,
    *,
    moves_from: tuple[str, ...],
) -> str:
    """Fivetran reported the connection's setup state: record it, and move a connection in
    one of ``moves_from`` to the state of the same name."""
    connection.setup_state = setup_state
    connection.updated_at = now
    if connection.state in moves_from:
        return await _transition(session, connection, setup_state, f"fivetran reported {event}")
    return "applied"


async def _sync_start(
    session: AsyncSession,
    connection: Connection,
    payload: dict[str, Any],
    connector_id: str,
    created: datetime,
    now: datetime,
) -> str:
    """``syncing`` — unless this sync (or a later one) already ended: webhooks can arrive
    out of order."""
    ended = [t for t in (connection.last_sync_succeeded_at, connection.last_sync_failed_at) if t]
    if ended and max(ended) >= created:
        return "stale"
    sync_id = payload.get("sync_id")
    if sync_id:
        end_seen = await session.scalar(
            select(FivetranWebhookReceipt.id).where(
                FivetranWebhookReceipt.fivetran_connection_id == connector_id,
                FivetranWebhookReceipt.sync_id == str(sync_id)[:100],
                FivetranWebhookReceipt.event == "sync_end",
            )
        )
        if end_seen is not None:
            return "stale"
    connection.sync_state = "syncing"
    connection.updated_at = now
    return "applied"


async def _sync_end(
    session: AsyncSession,
    connection: Connection,
    data: dict[str, Any],
    created: datetime,
    payload: dict[str, Any],
    now: datetime,
) -> str:
    status = str(data.get("status") or "").upper()
    connection.updated_at = now
    if status == "RESCHEDULED":
        connection.sync_state = "rescheduled"
        return "applied"
    connection.sync_state = "paused" if connection.paused else "scheduled"
    if status in _SUCCESS:
        field, kind = "last_sync_succeeded_at", "connection.sync_succeeded"
    elif status in _FAILURE:
        field, kind = "last_sync_failed_at", "connection.sync_failed"
    else:
        return "ignored_status"
    previous = getattr(connection, field)
    if previous is not None and previous >= created:
        return "stale"
    setattr(connection, field, created)
    event_data: dict[str, Any] = {
        "connection_id": connection.id,
        "service": connection.service,
        "state": connection.state,
        "fivetran_connection_id": connection.fivetran_connection_id,
        "sync_id": payload.get("sync_id"),
        "status": status,
        field: created,
    }
    if kind == "connection.sync_failed":
        event_data["reason"] = str(data.get("reason"))[:500] if data.get("reason") else None
    await emit(
        session,
        kind=kind,
        data=event_data,
        connection_id=connection.id,
        end_user_external_id=await _end_user_external_id(session, connection),
    )
    return "applied"
