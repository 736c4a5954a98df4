"""The audit table (append-only; see :mod:`app.audit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

SeqType = BigInteger().with_variant(Integer(), "sqlite")


class AuditRecord(Base):
    """One audited action."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_at", "at"),)

    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: ``api_key`` | ``cli`` | ``system``.
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(40), default=None)
    actor_name: Mapped[str | None] = mapped_column(String(200), default=None)
    client_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    #: e.g. ``end_user.upsert``, ``connection.delete``, ``api_key.revoke``.
    action: Mapped[str] = mapped_column(String(64))
    #: ``end_user`` | ``connection`` | ``api_key`` | ``vault_key``.
    target_type: Mapped[str] = mapped_column(String(20))
    target_id: Mapped[str] = mapped_column(String(200))
    end_user_external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
