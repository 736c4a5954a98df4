"""Refreshing a grant we still own (R19 single refresher, R20 atomic and serialized).

Once a grant is handed to Fivetran only Fivetran refreshes it
(:func:`app.connections.service.ensure_refresh_allowed`); before that, refreshes of one
connection are serialized under a row lock and the rotated refresh token is committed before
the new access token is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.connect.models import OAuthGrant
from app.connections.models import Connection
from app.connections.service import OWNER as TOKENS_OWNER
from app.connections.service import (
    ensure_refresh_allowed,
)
from app.db import utcnow
from app.errors import AppError, Conflict, UpstreamError
from app.providers.client import refresh
from app.providers.errors import (
    OAuthProviderError,
)
from app.providers.tokens import TokenResult
from app.state import AppState
from app.vault import Secret

log = logging.getLogger("pbf.connect")


@dataclass
class RefreshOutcome:
    """The access token to use after :func:`refresh_owned_grant` (never logged)."""

    access_token: Secret
    expires_at: datetime | None
    generation: int
    #: False when a concurrent caller refreshed while this one waited for the lock.
    refreshed: bool


async def _lock_grant(session: AsyncSession, connection_id: str) -> OAuthGrant | None:
    """Serialize refreshers of one connection: ``SELECT … FOR UPDATE`` on PostgreSQL; on
    SQLite a (no-op) conditional ``UPDATE`` of the row, which takes the database write lock
    until this transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        return await session.scalar(
            select(OAuthGrant)
            .where(OAuthGrant.connection_id == connection_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    await session.execute(
        update(OAuthGrant)
        .where(OAuthGrant.connection_id == connection_id)
        .values(generation=OAuthGrant.generation)
        .execution_options(synchronize_session=False)
    )
    return await session.get(OAuthGrant, connection_id, populate_existing=True)


async def refresh_owned_grant(
    session: AsyncSession,
    app_state: AppState,
    connection: Connection,
    *,
    reuse_within_seconds: float = 30.0,
) -> RefreshOutcome:
    """Refresh the grant of a connection whose tokens Fivetran does not own yet.

    * A grant handed to Fivetran is never refreshed (``GrantHandedOff``, 409): the
      single-refresher rule (R19).
    * Refreshers of one connection are serialized by a row lock (R20); one that waited and
      finds the grant already refreshed uses the new access token without a second request,
      and so does one arriving within ``reuse_within_seconds`` of a completed refresh while
      that access token is still valid (a burst of callers makes one token request).
    * The rotated refresh token is sealed and **committed before the new access token is
      returned** (named durable point; this function commits the caller's session).
    * ``invalid_grant`` (or another terminal error) marks the grant ``needs_reauth`` (409
      ``needs_reauth``) and is not retried. A transport failure after the request may have
      been sent is ambiguous: one retry with the same refresh token, then the same rule.
    """
    ensure_refresh_allowed(connection)
    connection_id: str = connection.id
    end_user_id: str = connection.end_user_id
    vault = app_state.vault
    if session.in_transaction():
        await session.commit()
    observed = await session.get(OAuthGrant, connection_id, populate_existing=True)
    if observed is None:
        raise Conflict("This connection has no stored grant", code="refresh_unavailable")
    observed_generation = observed.generation
    await session.commit()

    grant = await _lock_grant(session, connection_id)
    current = await session.get(Connection, connection_id, populate_existing=True)
    if grant is None or current is None:
        await session.rollback()
        raise Conflict("This connection has no stored grant", code="refresh_unavailable")
    try:
        ensure_refresh_allowed(current)
    except AppError:
        await session.rollback()
        raise
    if grant.needs_reauth:
        await session.rollback()
        raise Conflict("The grant was revoked; re-authorize the connection", code="needs_reauth")

    async def _get(field_name: str) -> Secret | None:
        return await vault.get(
            session,
            end_user_id=end_user_id,
            owner_type=TOKENS_OWNER,
            owner_id=connection_id,
            field=field_name,
        )

    async def _put(field_name: str, value: Secret) -> None:
        await vault.put(
            session,
            end_user_id=end_user_id,
            owner_type=TOKENS_OWNER,
            owner_id=connection_id,
            field=field_name,
            value=value,
        )

    now = utcnow()
    just_refreshed = (
        reuse_within_seconds > 0
        and grant.refreshed_at is not None
        and now - grant.refreshed_at < timedelta(seconds=reuse_within_seconds)
        and (grant.access_token_expires_at is None or grant.access_token_expires_at > now)
    )
    if grant.generation != observed_generation or just_refreshed:
        access_token = await _get("access_token")
        if access_token is not None:
            outcome = RefreshOutcome(
                access_token, grant.access_token_expires_at, grant.generation, refreshed=False
            )
            await session.commit()
            return outcome

    refresh_token = await _get("refresh_token")
    if refresh_token is None:
        await session.rollback()
        raise Conflict("This grant has no refresh token", code="refresh_unavailable")
    registry = app_state.providers
    provider = registry.get(grant.provider_key)
    credentials = await registry.credentials(session, provider.key)
    token_endpoint = (
        grant.token_endpoint
        or provider.endpoints(
            {
                k: v
                for k, v in (current.config or {}).items()
                if k in {s.name for s in provider.input_specs}
            }
        ).token_url
    )

    async def _call() -> TokenResult:
        return await refresh(
            provider,
            refresh_token=refresh_token,
            token_endpoint=token_endpoint,
            credentials=credentials,
            issuer=grant.issuer or "",
            transport=app_state.outbound_transport,
        )

    try:
        try:
            result = await _call()
        except OAuthProviderError as exc:
            if exc.error_code != "token_endpoint_unavailable":
                raise
            log.warning(
                "grant refresh outcome unknown; retrying once",
                extra={"connection_id": connection_id},
            )
            result = await _call()
    except OAuthProviderError as exc:
        if exc.terminal:
            grant.needs_reauth = True
            await session.commit()
            log.warning(
                "grant refresh refused; re-authorization needed",
                extra={"connection_id": connection_id, "error": exc.error_code},
            )
            raise Conflict(
                "The provider refused the refresh token; re-authorize the connection",
                code="needs_reauth",
            ) from None
        await session.rollback()
        raise UpstreamError(
            f"Refreshing the grant failed ({exc.error_code})", code="refresh_failed"
        ) from None

    access_token = result.access_token
    if access_token is None:  # validate_token_body already refuses such an answer
        await session.rollback()
        raise UpstreamError("Refreshing the grant returned no access token", code="refresh_failed")
    # Durable point "rotated grant stored": before anyone uses the new access token.
    if result.refresh_token is not None:
        await _put("refresh_token", result.refresh_token)
    await _put("access_token", access_token)
    now = utcnow()
    grant.generation = grant.generation + 1
    grant.refreshed_at = now
    grant.access_token_expires_at = result.expires_at
    if result.granted_scope:
        grant.granted_scope = result.granted_scope
    generation = grant.generation
    expires_at = grant.access_token_expires_at
    await session.commit()
    log.info(
        "grant refreshed",
        extra={"connection_id": connection_id, "rotated": bool(result.rotated)},
    )
    return RefreshOutcome(access_token, expires_at, generation, refreshed=True)
