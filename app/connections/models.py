"""Tables of the connections domain: connections and their state transitions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class Connection(Base):
    """One source connection of an end-user and its mirror of the Fivetran state."""

    __tablename__ = "connections"
    __table_args__ = (
        UniqueConstraint("end_user_id", "service", "slot"),
        Index("ix_connections_account", "end_user_id", "service", "account_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    end_user_id: Mapped[str] = mapped_column(ForeignKey("end_users.id"), index=True)
    service: Mapped[str] = mapped_column(String(100))
    slot: Mapped[int] = mapped_column(Integer)
    auth_method: Mapped[str] = mapped_column(String(20))
    provider_key: Mapped[str | None] = mapped_column(String(100), default=None)
    state: Mapped[str] = mapped_column(String(20), index=True)
    state_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    group_id: Mapped[str | None] = mapped_column(String(100), default=None)
    schema_name: Mapped[str] = mapped_column(String(200))
    fivetran_connection_id: Mapped[str | None] = mapped_column(
        String(100), default=None, unique=True
    )
    #: Non-secret config given by the caller (secrets live in the vault).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Names of the secret fields stored in the vault as ``credentials.<name>``.
    secret_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: Non-secret provider metadata (instance_url, realm_id, …) kept for re-creation; the
    #: grant (scope, issuer, client id) is :class:`app.connect.models.OAuthGrant`.
    oauth_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    setup_state: Mapped[str | None] = mapped_column(String(20), default=None)
    sync_state: Mapped[str | None] = mapped_column(String(20), default=None)
    setup_tests: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    paused: Mapped[bool] = mapped_column(Boolean, default=True)
    sync_frequency: Mapped[int | None] = mapped_column(Integer, default=None)
    daily_sync_time: Mapped[str | None] = mapped_column(String(5), default=None)
    #: The grant was handed to Fivetran: from now on only Fivetran refreshes it.
    grant_handed_off_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_sync_succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_sync_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: The provider-side account the OAuth grant belongs to (org, portal, Google account …)
    #: and its display label: personal data, never logged (``app.providers.identity``).
    account_id: Mapped[str | None] = mapped_column(String(255), default=None)
    account_label: Mapped[str | None] = mapped_column(String(255), default=None)
    #: Another live connection of the same end-user and service on the same account
    #: (``PBF_CONNECT__DUPLICATE_ACCOUNT=flag``).
    duplicate_of: Mapped[str | None] = mapped_column(String(40), default=None)


class ConnectionTransition(Base):
    """Every state change of a connection, with its time and reason."""

    __tablename__ = "connection_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(20), default=None)
    to_state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
