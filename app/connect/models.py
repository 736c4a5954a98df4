"""Connect sessions, OAuth flows and the grants we still own.

* ``connect_sessions`` — minted by a caller (``POST /v1/connect-sessions``); carries the
  single-use start token (only its SHA-256 is stored), the validated ``return_to`` and the
  reserved connection.
* ``oauth_flows`` — one row per browser start: hashed 256-bit ``state`` (single use), hashed
  browser-binding cookie, the issuer and endpoints pinned at start, the exact redirect URI and
  the expiry. The PKCE verifier lives in the vault (owner ``oauth_flow``, owner id = flow id).
* ``connect_card_links`` — Fivetran Connect Cards handed out, with the hashed single-use token
  of their return to us (:mod:`app.connect.card`).
* ``oauth_grants`` — metadata of the tokens stored in the vault for a connection (issuer,
  client id, granted scope, expiry); the row is the per-connection lock for refreshes (R20).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class ConnectSession(Base):
    __tablename__ = "connect_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    token_consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    caller_key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    end_user_id: Mapped[str] = mapped_column(String(40), index=True)
    end_user_external_id: Mapped[str] = mapped_column(String(200))
    end_user_name: Mapped[str | None] = mapped_column(String(200), default=None)
    service: Mapped[str] = mapped_column(String(100))
    provider_key: Mapped[str] = mapped_column(String(100))
    connection_id: Mapped[str] = mapped_column(String(40), index=True)
    reauthorization: Mapped[bool] = mapped_column(Boolean, default=False)
    return_to: Mapped[str] = mapped_column(String(2048))
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: The connection that already holds the consented account (``account_already_connected``)
    #: or that the session returned instead of a new one (``return_existing``).
    existing_connection_id: Mapped[str | None] = mapped_column(String(40), default=None)


class OAuthFlow(Base):
    __tablename__ = "oauth_flows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    session_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("connect_sessions.id", ondelete="CASCADE"), index=True
    )
    end_user_id: Mapped[str] = mapped_column(String(40))
    connection_id: Mapped[str] = mapped_column(String(40))
    provider_key: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str] = mapped_column(String(500))
    iss_parameter_supported: Mapped[bool] = mapped_column(Boolean, default=False)
    authorization_endpoint: Mapped[str] = mapped_column(String(1000))
    token_endpoint: Mapped[str] = mapped_column(String(1000))
    client_id: Mapped[str] = mapped_column(String(500))
    redirect_uri: Mapped[str] = mapped_column(String(1000))
    requested_scope: Mapped[str | None] = mapped_column(String(2000), default=None)
    return_to: Mapped[str] = mapped_column(String(2048))
    ua_binding_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="started")
    error: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class OAuthGrant(Base):
    __tablename__ = "oauth_grants"

    connection_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    end_user_id: Mapped[str] = mapped_column(String(40), index=True)
    provider_key: Mapped[str] = mapped_column(String(100))
    issuer: Mapped[str | None] = mapped_column(String(500), default=None)
    client_id: Mapped[str | None] = mapped_column(String(500), default=None)
    token_endpoint: Mapped[str | None] = mapped_column(String(1000), default=None)
    granted_scope: Mapped[str | None] = mapped_column(String(2000), default=None)
    has_refresh_token: Mapped[bool] = mapped_column(Boolean, default=False)
    obtained_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    access_token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    #: bumped by every refresh; the conditional update on it serializes refreshers (R20)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    needs_reauth: Mapped[bool] = mapped_column(Boolean, default=False)


class ConnectCardLink(Base):
    """One Connect Card handed out for a connection (``POST /v1/connections/{id}/connect-card``).

    Fivetran's card redirects the browser to ``/connect-card/return/{token}``; only the
    SHA-256 of that single-use token is stored. ``status``: ``pending`` → ``consumed`` (the
    browser came back) → ``completed`` | ``failed``; ``superseded`` when a newer card was
    issued for the same connection before this one came back.
    """

    __tablename__ = "connect_card_links"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    connection_id: Mapped[str] = mapped_column(String(40), index=True)
    end_user_id: Mapped[str] = mapped_column(String(40))
    caller_key_id: Mapped[str | None] = mapped_column(String(40), default=None)
    return_to: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    error: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
