"""Table of the idempotency kit."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """A caller's ``Idempotency-Key``: only its hash, the request fingerprint and the response."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("caller_id", "scope", "key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    caller_id: Mapped[str] = mapped_column(String(40))
    scope: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    #: Id of the resource the first request started creating (resumed by a retry).
    resource_id: Mapped[str | None] = mapped_column(String(100), default=None)
    response_status: Mapped[int | None] = mapped_column(Integer, default=None)
    response_body: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
