"""Connect sessions and the start of the OAuth browser flow (oauth-security.md R1–R24).

Design in one screen:

* A caller mints a **connect session** (``POST /v1/connect-sessions``). ``return_to`` is
  validated here, once (R22); the connection is reserved through onboarding; the browser
  gets a single-use start token (only its SHA-256 is stored) valid for at most 5 minutes.
* The browser **starts** the flow with a top-level form POST to ``/connect/{token}`` from an
  allow-listed ``Origin`` (or via our own confirmation page) — never a bare GET link (R4).
  The start token is consumed atomically; a flow row is written with a hashed 256-bit
  ``state`` (R1), a hashed browser-binding cookie (R3), the PKCE S256 verifier sealed in the
  vault (R5), the issuer and endpoints pinned from configuration (R9), the exact redirect URI
  built from ``public_base_url`` (R7) and an expiry of at most 10 minutes.
* The **callback** (:mod:`app.connect.callback`, OAuth 1.0a: :mod:`app.connect.oauth1`)
  exchanges the code and completes the session; how a session ends, whatever the flow, is
  :mod:`app.connect.outcomes`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller, key_is_revoked
from app.config import Settings
from app.connect.models import ConnectSession, OAuthFlow
from app.connect.origins import validate_return_to
from app.connect.outcomes import (
    FLOW_OWNER,
    BrowserResult,
    emit_outcome,
    fail_session,
    sha256_hex,
    shred_verifier,
)
from app.connect.schemas import (
    ConnectSessionCreate,
    ConnectSessionCreated,
    ConnectSessionView,
)
from app.connections.models import Connection
from app.connections.service import (
    fail_oauth,
    mark_authorizing,
    reserve_oauth_connection,
)
from app.db import new_id, utcnow
from app.end_users.service import get_end_user
from app.errors import Conflict, InvalidInput, NotFound
from app.fivetran.index import get_service
from app.kit import idempotency
from app.providers.client import build_authorization_url, scope_string
from app.providers.oauth1 import OAuth1Provider
from app.providers.registry import Provider
from app.state import AppState
from app.vault.secret import Secret

log = logging.getLogger("pbf.connect")

BINDING_COOKIE = "__Host-oauth_flow"


# --------------------------------------------------------------------------------------------
# Results handed to the router


@dataclass
class CreatedSession:
    row: ConnectSession
    connect_url: str


@dataclass
class Confirmation:
    """Data of the confirmation page shown on ``GET /connect/{token}``."""

    source: str
    end_user: str
    expires_at: datetime
    reauthorization: bool = False


# --------------------------------------------------------------------------------------------
# Connect sessions (API)


def effective_status(row: ConnectSession, now: datetime | None = None) -> str:
    """``pending | completed | failed | expired`` (a pending session past its expiry)."""
    now = now or utcnow()
    if row.status == "pending" and row.expires_at <= now:
        return "expired"
    return row.status  # pending | completed | failed | expired (closed by the sweep)


def _provider_for_service(app_state: AppState, service: str) -> Provider | OAuth1Provider:
    provider = app_state.providers.for_service(service)
    if provider is not None:
        return provider
    oauth1 = app_state.providers.oauth1.for_service(service)  # X / Twitter (OAuth 1.0a)
    if oauth1 is not None:
        return oauth1

    known = get_service(service) is not None or any(
        p.fivetran_service == service for p in app_state.providers.all()
    )
    if not known:
        raise NotFound(f"Unknown source '{service}'", code="source_not_found")
    raise InvalidInput(
        f"'{service}' has no configured OAuth app; it cannot be connected through a "
        "connect session",
        code="oauth_not_configured",
        field="service",
    )


def _validated_inputs(
    provider: Provider | OAuth1Provider, config: Mapping[str, Any]
) -> dict[str, str]:
    """The provider's end-user inputs (``shop``, ``subdomain`` …) taken from ``config`` and
    checked against their patterns; 422 naming ``config.<name>``."""
    names = {s.name for s in provider.input_specs}
    raw = {k: v for k, v in config.items() if k in names}
    try:
        return dict(provider.validate_inputs(raw))
    except InvalidInput as exc:
        field_name = exc.extra.get("field")
        if isinstance(field_name, str) and field_name.startswith("inputs."):
            exc.extra["field"] = "config." + field_name.removeprefix("inputs.")
        raise


async def create_connect_session(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    end_user: str,
    service: str,
    return_to: str,
    config: Mapping[str, Any] | None = None,
    connection_id: str | None = None,
) -> CreatedSession:
    """Mint a connect session (flush only). Raises 404 for unknown/foreign end-users and
    unknown sources, 422 naming the field for a bad ``return_to``, ``service`` or ``config``.

    With ``connection_id`` the session re-authorizes that connection (same end-user and
    service). Nothing is written when any check fails (the caller's transaction rolls back).
    """
    settings = app_state.settings
    safe_return_to = validate_return_to(settings, return_to)
    eu = await get_end_user(session, caller, end_user)
    provider = _provider_for_service(app_state, service)
    given = dict(config or {})
    if connection_id is None:
        inputs = _validated_inputs(provider, given)
        provider.endpoints(inputs)  # must render for these (validated) inputs
        connection = await reserve_oauth_connection(
            session,
            end_user=eu,
            service=service,
            config={**given, **inputs},
            app_state=app_state,
        )
    else:
        connection = await reserve_oauth_connection(
            session,
            end_user=eu,
            service=service,
            config=given,
            connection_id=connection_id,
            app_state=app_state,
        )
        inputs = _validated_inputs(provider, {**(connection.config or {}), **given})
        provider.endpoints(inputs)
    now = utcnow()
    token = secrets.token_urlsafe(32)
    ttl = timedelta(seconds=settings.connect.start_token_ttl_seconds)
    row = ConnectSession(
        id=new_id("cs"),
        token_hash=sha256_hex(token),
        token_expires_at=now + ttl,
        caller_key_id=caller.key_id,
        end_user_id=eu.id,
        end_user_external_id=eu.external_id,
        end_user_name=eu.name,
        service=service,
        provider_key=provider.key,
        connection_id=connection.id,
        reauthorization=connection_id is not None,
        return_to=safe_return_to,
        config={"inputs": inputs},
        status="pending",
        created_at=now,
        expires_at=now + ttl,
    )
    session.add(row)
    await audit.record(
        session,
        action="connection.reauthorize" if row.reauthorization else "connect_session.create",
        target_type="connection",
        target_id=connection.id,
        end_user=eu.external_id,
        details={"session_id": row.id, "service": service},
    )
    await session.flush()
    log.info(
        "connect session created",
        extra={"session_id": row.id, "service": service, "connection_id": connection.id},
    )
    return CreatedSession(row=row, connect_url=f"{settings.public_base_url}/connect/{token}")


async def get_connect_session(
    session: AsyncSession, *, caller: Caller, session_id: str
) -> ConnectSession:
    """One session; 404 when unknown or outside the caller's end-user restriction."""
    row = await session.get(ConnectSession, session_id)
    if row is None or not caller.can_access_end_user(row.end_user_external_id):
        raise NotFound(
            f"Connect session '{session_id}' not found", code="connect_session_not_found"
        )
    return row


# --------------------------------------------------------------------------------------------
# Browser start


async def _usable_session_by_token(session: AsyncSession, token: str) -> ConnectSession | None:
    now = utcnow()
    row = await session.scalar(
        select(ConnectSession).where(ConnectSession.token_hash == sha256_hex(token))
    )
    if (
        row is None
        or row.token_consumed_at is not None
        or row.token_expires_at <= now
        or row.status != "pending"
    ):
        return None
    return row


async def confirmation_for(
    session: AsyncSession, app_state: AppState, *, token: str
) -> Confirmation | None:
    """Data of the confirmation page, or ``None`` when the token cannot start a flow."""
    row = await _usable_session_by_token(session, token)
    if row is None:
        return None
    provider = app_state.providers.find(row.provider_key) or app_state.providers.oauth1.find(
        row.provider_key
    )
    return Confirmation(
        source=provider.display_name if provider else row.service,
        end_user=row.end_user_name or row.end_user_external_id,
        expires_at=row.token_expires_at,
        reauthorization=row.reauthorization,
    )


async def session_by_token(session: AsyncSession, token: str) -> ConnectSession | None:
    """The session a start token belongs to, whatever its state (for an error page's link
    back; only the token's holder can name it)."""
    return await session.scalar(
        select(ConnectSession).where(ConnectSession.token_hash == sha256_hex(token))
    )


def redirect_uri_for(settings: Settings, provider_key: str) -> str:
    """R7: the one exact redirect URI of a provider, from configuration only."""
    return f"{settings.public_base_url}/oauth/callback/{provider_key}"


async def consume_start_token(session: AsyncSession, token: str) -> ConnectSession | BrowserResult:
    """Consume the single-use start token atomically (R4); its session, or the error page.
    A session whose caller key was revoked meanwhile is failed (``key_revoked``)."""
    now = utcnow()
    token_hash = sha256_hex(token)
    # First statement of the transaction: on SQLite it takes the write lock right away.
    result = await session.execute(
        update(ConnectSession)
        .where(
            ConnectSession.token_hash == token_hash,
            ConnectSession.token_consumed_at.is_(None),
            ConnectSession.token_expires_at > now,
            ConnectSession.status == "pending",
        )
        .values(token_consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return BrowserResult.error_page("link_invalid", row=await session_by_token(session, token))
    row = await session.scalar(
        select(ConnectSession).where(ConnectSession.token_hash == token_hash)
    )
    assert row is not None
    if await key_is_revoked(session, row.caller_key_id):  # sessions die with their key
        await fail_session(session, row=row, flow=None, error_code="key_revoked")
        return BrowserResult.error_page("link_invalid")
    return row


#: Starts the authorization of a consumed session whose provider is OAuth 1.0a (X / Twitter):
#: :func:`app.connect.oauth1.start_for_session`, passed in by the router.
OAuth1Start = Callable[[AsyncSession, AppState, ConnectSession], Awaitable[BrowserResult]]


async def start_flow(
    session: AsyncSession,
    app_state: AppState,
    *,
    token: str,
    oauth1_start: OAuth1Start | None = None,
) -> BrowserResult:
    """Consume the start token atomically and begin the authorization request (an OAuth 1.0a
    provider's through ``oauth1_start``).

    The caller (router) has already checked the request's ``Origin``.
    """
    settings = app_state.settings
    consumed = await consume_start_token(session, token)
    if isinstance(consumed, BrowserResult):
        return consumed
    row = consumed
    if oauth1_start is not None and app_state.providers.oauth1.find(row.provider_key):
        return await oauth1_start(session, app_state, row)
    provider = app_state.providers.get(row.provider_key)
    # RFC 8414: an operator-configured issuer's metadata decides e.g. whether iss is required.
    provider = await app_state.providers.resolved(provider, app_state.http)
    credentials = await app_state.providers.credentials(session, provider.key)
    inputs = dict((row.config or {}).get("inputs") or {})
    endpoints = provider.endpoints(inputs)

    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    binding = secrets.token_urlsafe(32)
    redirect_uri = redirect_uri_for(settings, provider.key)
    scope = scope_string(provider) or None
    flow = await record_flow(
        session,
        app_state,
        row,
        state=state,
        binding=binding,
        issuer=endpoints.issuer,
        iss_parameter_supported=bool(provider.spec.authorization_response_iss),
        authorization_endpoint=endpoints.authorization_url,
        token_endpoint=endpoints.token_url,
        client_id=credentials.client_id,
        redirect_uri=redirect_uri,
        requested_scope=scope,
        secret_field="code_verifier",
        secret=verifier,
    )
    url = build_authorization_url(
        provider,
        client_id=credentials.client_id,
        state=state,
        code_verifier=verifier,
        redirect_uri=redirect_uri,
        inputs=inputs,
        authorization_endpoint=endpoints.authorization_url,
    )
    log.info(
        "oauth flow started",
        extra={"session_id": row.id, "flow_id": flow.id, "provider": provider.key},
    )
    return BrowserResult(location=url, set_binding_cookie=binding)


async def record_flow(
    session: AsyncSession,
    app_state: AppState,
    row: ConnectSession,
    *,
    state: str,
    binding: str,
    issuer: str | None,
    iss_parameter_supported: bool,
    authorization_endpoint: str,
    token_endpoint: str,
    client_id: str,
    redirect_uri: str,
    requested_scope: str | None,
    secret_field: str,
    secret: str | Secret,
) -> OAuthFlow:
    """Record a started authorization request (OAuth 2.0 and OAuth 1.0a alike): the flow row —
    its ``state`` (the OAuth 1.0a request token) and browser ``binding`` stored as SHA-256
    only — with the flow's secret (PKCE verifier, request-token secret) in the vault; the
    session now expires with the flow, and the reserved connection is ``authorizing``."""
    now = utcnow()
    flow = OAuthFlow(
        id=new_id("flw"),
        state_hash=sha256_hex(state),
        session_id=row.id,
        end_user_id=row.end_user_id,
        connection_id=row.connection_id,
        provider_key=row.provider_key,
        issuer=issuer,
        iss_parameter_supported=iss_parameter_supported,
        authorization_endpoint=authorization_endpoint,
        token_endpoint=token_endpoint,
        client_id=client_id,
        redirect_uri=redirect_uri,
        requested_scope=requested_scope,
        return_to=row.return_to,
        ua_binding_hash=sha256_hex(binding),
        status="started",
        created_at=now,
        expires_at=now + timedelta(seconds=app_state.settings.connect.flow_ttl_seconds),
    )
    session.add(flow)
    await session.flush()
    await app_state.vault.put(
        session,
        end_user_id=row.end_user_id,
        owner_type=FLOW_OWNER,
        owner_id=flow.id,
        field=secret_field,
        value=secret,
    )
    row.expires_at = flow.expires_at
    connection = await session.get(Connection, row.connection_id)
    if connection is not None:
        await mark_authorizing(session, connection)
    await session.flush()
    return flow


# --------------------------------------------------------------------------------------------
# Router helpers


def session_out(row: ConnectSession) -> ConnectSessionView:
    return ConnectSessionView(
        id=row.id,
        end_user=row.end_user_external_id,
        service=row.service,
        status=effective_status(row),  # type: ignore[arg-type]
        connection_id=row.connection_id,
        error=row.error,
        existing_connection_id=row.existing_connection_id,
        reauthorization=row.reauthorization,
        created_at=row.created_at,
        expires_at=row.expires_at,
        completed_at=row.completed_at,
    )


def _created_out(created: CreatedSession) -> ConnectSessionCreated:
    return ConnectSessionCreated(
        id=created.row.id,
        connect_url=created.connect_url,
        expires_at=created.row.token_expires_at,
        status=effective_status(created.row),  # type: ignore[arg-type]
    )


async def _reissue_start_token(
    session: AsyncSession, app_state: AppState, session_id: str
) -> CreatedSession:
    """Idempotent replay: the stored response never holds the start token (only its hash is
    kept), so a replay re-issues it — possible only while the session was not started."""
    now = utcnow()
    row = await session.get(ConnectSession, session_id)
    if (
        row is None
        or row.status != "pending"
        or row.token_consumed_at is not None
        or row.token_expires_at <= now
    ):
        raise Conflict(
            "The connect session of this Idempotency-Key was already started or has expired; "
            "create a new one with a new key",
            code="connect_session_not_restartable",
        )
    token = secrets.token_urlsafe(32)
    row.token_hash = sha256_hex(token)
    await session.flush()
    return CreatedSession(
        row=row, connect_url=f"{app_state.settings.public_base_url}/connect/{token}"
    )


async def create_connect_session_idempotent(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    body: ConnectSessionCreate,
    idempotency_key: str | None,
) -> Response | ConnectSessionCreated:
    """``POST /v1/connect-sessions`` with ``Idempotency-Key`` support (a replay re-issues the
    single-use start token: it is never stored in clear)."""

    async def create(
        _handle: idempotency.IdempotencyHandle,
    ) -> tuple[Response | ConnectSessionCreated, Any]:
        created = await create_connect_session(
            session,
            app_state,
            caller=caller,
            end_user=body.end_user,
            service=body.service,
            return_to=body.return_to,
            config=body.config,
            connection_id=body.connection_id,
        )
        out = _created_out(created)
        stored_body = out.model_dump(mode="json")
        stored_body["connect_url"] = None  # the start token is never stored in clear
        return out, stored_body

    async def replay(stored: dict[str, Any]) -> Response | ConnectSessionCreated:
        created = await _reissue_start_token(session, app_state, str(stored.get("id")))
        out = _created_out(created)
        return JSONResponse(
            out.model_dump(mode="json"), status_code=201, headers={"Idempotent-Replayed": "true"}
        )

    return await idempotency.run_create(
        session,
        caller_id=caller.key_id,
        scope="POST /v1/connect-sessions",
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        ttl_hours=app_state.settings.api.idempotency_ttl_hours,
        create=create,
        replay=replay,
    )


# --------------------------------------------------------------------------------------------
# Expiry


async def expire_stale_sessions(
    session: AsyncSession, app_state: AppState, *, now: datetime | None = None, limit: int = 200
) -> int:
    """Close pending sessions past their expiry (flush only): status ``expired``, the
    unused PKCE verifiers shredded, the reserved (new) connection failed with ``expired``
    and ``connect_session.failed`` emitted. Sessions whose callback is in flight (a consumed
    flow) are left to the callback. Returns how many sessions were expired."""
    now = now or utcnow()
    in_flight = select(OAuthFlow.id).where(
        OAuthFlow.session_id == ConnectSession.id, OAuthFlow.consumed_at.is_not(None)
    )
    stmt = (
        select(ConnectSession)
        .where(
            ConnectSession.status == "pending",
            ConnectSession.expires_at <= now,
            ~in_flight.exists(),
        )
        .order_by(ConnectSession.expires_at)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list((await session.scalars(stmt)).all())
    for row in rows:
        row.status = "expired"
        row.error = "expired"
        row.completed_at = now
        flows = (
            await session.scalars(select(OAuthFlow).where(OAuthFlow.session_id == row.id))
        ).all()
        for flow in flows:
            flow.status = "expired"
            await shred_verifier(session, app_state, flow, flush=False)
        if not row.reauthorization:
            connection = await session.get(Connection, row.connection_id)
            if connection is not None:
                await fail_oauth(session, connection, error_code="expired")
        await emit_outcome(session, row, connection_id=row.connection_id, error="expired")
    await session.flush()
    if rows:
        log.info("connect sessions expired", extra={"count": len(rows)})
    return len(rows)
