"""Tables of the end-users domain: end-users and the Fivetran groups they share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class EndUser(Base):
    """One end-user of the company (``external_id`` is the company's own id)."""

    __tablename__ = "end_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    slug: Mapped[str] = mapped_column(String(64))
    group_strategy: Mapped[str] = mapped_column(String(20))
    fivetran_group_id: Mapped[str | None] = mapped_column(String(100), default=None)
    #: True when the group (and its destination) was created for this end-user alone.
    owns_group: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The end-user's own destination (request override), non-secret part only.
    destination: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    #: ``None`` | ``in_progress`` | ``completed``.
    offboarding_state: Mapped[str | None] = mapped_column(String(20), default=None)
    offboarding_error: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class ServiceGroup(Base):
    """Fivetran group of one connector type (``per_service`` strategy), or the shared group."""

    __tablename__ = "service_groups"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    fivetran_group_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
