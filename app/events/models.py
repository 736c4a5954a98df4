"""Tables of the events domain: the outbox, its deliveries and attempts, webhook receipts.

* ``events`` — the outbox. One row per domain event, written by :func:`app.events.outbox.emit`
  in the same transaction as the state change it reports. ``seq`` gives the global order (and
  the per-connection order); ``id`` is the public ``evt_…`` id.
* ``event_deliveries`` — one row per (event, endpoint), created by the worker's fan-out step.
  A worker leases a row (``leased_until``/``lease_owner``), POSTs it, and records the outcome.
* ``event_delivery_attempts`` — one row per attempt; ``(delivery_id, attempt)`` is unique, so
  the same attempt can never be recorded (and so never sent) twice.
* ``fivetran_webhook_receipts`` — inbound Fivetran webhooks already applied (dedupe).
* ``reconcile_spend`` — Fivetran requests spent by each reconciliation (its hourly allowance).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

DELIVERY_PENDING = "pending"
DELIVERY_DELIVERED = "delivered"
DELIVERY_DEAD = "dead"


class Event(Base):
    """One outbound event (the outbox)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_connection_id_seq", "connection_id", "seq"),
        Index("ix_events_end_user_external_id_seq", "end_user_external_id", "seq"),
        Index("ix_events_kind_seq", "kind", "seq"),
        Index("ix_events_fanned_out_at_seq", "fanned_out_at", "seq"),
    )

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(64))
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    end_user_external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Set once the worker created this event's delivery rows (one per matching endpoint).
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class EventDelivery(Base):
    """Delivery of one event to one endpoint."""

    __tablename__ = "event_deliveries"
    __table_args__ = (
        UniqueConstraint("event_seq", "endpoint_id", name="uq_event_deliveries_event_endpoint"),
        Index("ix_event_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index(
            "ix_event_deliveries_endpoint_ordering",
            "endpoint_id",
            "ordering_key",
            "status",
            "event_seq",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_seq: Mapped[int] = mapped_column(SeqType, ForeignKey("events.seq", ondelete="CASCADE"))
    endpoint_id: Mapped[str] = mapped_column(String(64))
    #: Deliveries sharing (endpoint_id, ordering_key) go out strictly in event_seq order.
    #: The connection id, or the event id for events not about a connection.
    ordering_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=DELIVERY_PENDING)
    #: Attempts ever made (numbers the attempt rows); never reset.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: Attempts since the delivery was (re)queued; ``max_attempts`` applies to this count.
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    lease_owner: Mapped[str | None] = mapped_column(String(80), default=None)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(300), default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EventDeliveryAttempt(Base):
    """One HTTP attempt of a delivery (an audit trail; unique per attempt number)."""

    __tablename__ = "event_delivery_attempts"
    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="uq_event_delivery_attempts_attempt"),
    )

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("event_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(String(300), default=None)


class FivetranWebhookReceipt(Base):
    """An inbound Fivetran webhook we accepted (signature verified); dedupe by ``dedupe_key``."""

    __tablename__ = "fivetran_webhook_receipts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    fivetran_connection_id: Mapped[str | None] = mapped_column(String(100), default=None)
    sync_id: Mapped[str | None] = mapped_column(String(100), default=None)
    connection_id: Mapped[str | None] = mapped_column(String(40), default=None)
    outcome: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConnectionFreshness(Base):
    """When we last learned a connection's state from Fivetran (webhook or reconciliation)."""

    __tablename__ = "connection_freshness"

    connection_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: ``webhook`` or ``reconcile``.
    source: Mapped[str] = mapped_column(String(16))
    last_reconciled_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, default=None, index=True
    )
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)


class ReconcileSpend(Base):
    """Fivetran requests (retries included) one reconciliation of one connection sent; the
    sum over the last hour is what reconciliation has spent of its share of the budget."""

    __tablename__ = "reconcile_spend"

    id: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    spent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    requests: Mapped[int] = mapped_column(Integer)
