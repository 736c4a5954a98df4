"""Connect sessions and the OAuth browser flow (oauth-security.md R1–R24).

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
* The **callback** consumes the state with one conditional ``UPDATE`` (R2; the row count
  decides, on SQLite and PostgreSQL alike) and commits that at once, then checks the
  provider path (R8), the binding cookie (R3) and ``iss`` (R9) before looking at ``error``
  (R24) or ``code``. The code is exchanged once with the flow's verifier, redirect URI and
  token endpoint (R11); the validated tokens are sealed in the vault and **committed before
  any Fivetran call** (durable point "tokens stored"); onboarding then creates or
  re-authorizes the Fivetran connection. The browser is sent ``303`` to the stored
  ``return_to`` with only ``session_id``, ``status`` and ``connection_id`` or an allow-listed
  ``error`` (R15). Sources that need a choice after consent (account pickers) are not created
  yet: the connection waits in ``needs_configuration`` and ``status=needs_configuration``.
  Unknown or foreign callbacks get a static page, never a redirect (R22).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi.responses import JSONResponse, Response
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller, key_is_revoked
from app.config import Settings
from app.connect.identity import (
    IDENTITY_ERROR_CODES,
    AccountAccepted,
    ReturnExisting,
    check_account,
    record_account,
)
from app.connect.models import ConnectSession, OAuthFlow, OAuthGrant
from app.connect.origins import validate_return_to, with_query
from app.connect.schemas import (
    ConnectSessionCreate,
    ConnectSessionCreated,
    ConnectSessionView,
)
from app.connections import states
from app.connections.configuration import await_configuration
from app.connections.models import Connection
from app.connections.replaced_tokens import keep_replaced_refresh_token
from app.connections.service import (
    complete_oauth,
    discard_reserved_connection,
    fail_oauth,
    mark_authorizing,
    reserve_oauth_connection,
)
from app.db import new_id, utcnow
from app.end_users.service import get_end_user
from app.errors import AppError, Conflict, InvalidInput, NotFound
from app.events.outbox import emit
from app.fivetran.index import get_service
from app.kit import idempotency
from app.providers.client import build_authorization_url, exchange_code, scope_string
from app.providers.errors import (
    ALLOWED_ERROR_CODES,
    CallbackVerificationError,
    OAuthProviderError,
)
from app.providers.oauth1 import OAuth1Provider
from app.providers.registry import Provider
from app.providers.tokens import TokenResult
from app.state import AppState
from app.vault.errors import VaultError
from app.vault.secret import Secret

log = logging.getLogger("pbf.connect")

BINDING_COOKIE = "__Host-oauth_flow"
FLOW_OWNER = "oauth_flow"
CONNECTION_OWNER = "connection"

#: Error codes a browser may be sent back with (on top of the provider allow-list).
SESSION_ERROR_CODES = frozenset(
    ALLOWED_ERROR_CODES
    | {
        "issuer_mismatch",
        "expired",
        "setup_failed",
        "fivetran_error",
        "internal_error",
        "vault_error",
        "connection_failed",
        "key_revoked",
        "interrupted",
    }
    | IDENTITY_ERROR_CODES
)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_code(code: str) -> str:
    return code if code in SESSION_ERROR_CODES else "provider_error"


# --------------------------------------------------------------------------------------------
# Results handed to the router


@dataclass
class CreatedSession:
    row: ConnectSession
    connect_url: str


@dataclass
class BrowserResult:
    """What the browser gets: a ``303`` (``location``) or a static page (``page`` reason)."""

    location: str | None = None
    page: str | None = None
    status_code: int = 303
    set_binding_cookie: str | None = None
    clear_binding_cookie: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    #: the error page's link back: a known session's stored ``return_to`` (never request data)
    back: str | None = None

    @classmethod
    def error_page(
        cls, reason: str, status_code: int = 400, *, row: ConnectSession | None = None
    ) -> BrowserResult:
        return cls(page=reason, status_code=status_code, back=back_link(row, reason))


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
        token_hash=_sha256(token),
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
        select(ConnectSession).where(ConnectSession.token_hash == _sha256(token))
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
        select(ConnectSession).where(ConnectSession.token_hash == _sha256(token))
    )


def back_link(row: ConnectSession | None, error: str) -> str | None:
    """The stored, validated ``return_to`` of ``row`` with ``status=error`` and ``error``
    (one of our page reasons), or ``None`` without a known session (R22)."""
    if row is None:
        return None
    return with_query(row.return_to, {"session_id": row.id, "status": "error", "error": error})


def redirect_uri_for(settings: Settings, provider_key: str) -> str:
    """R7: the one exact redirect URI of a provider, from configuration only."""
    return f"{settings.public_base_url}/oauth/callback/{provider_key}"


async def consume_start_token(session: AsyncSession, token: str) -> ConnectSession | BrowserResult:
    """Consume the single-use start token atomically (R4); its session, or the error page.
    A session whose caller key was revoked meanwhile is failed (``key_revoked``)."""
    now = utcnow()
    token_hash = _sha256(token)
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
        await _fail_session(session, row=row, flow=None, error_code="key_revoked")
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
        state_hash=_sha256(state),
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
        ua_binding_hash=_sha256(binding),
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
# Callback


def _single_params(items: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """The query as a dict; ``None`` when any parameter is repeated (parameter pollution:
    signed callbacks and metadata must not depend on which copy a parser picks)."""
    out: dict[str, str] = {}
    for key, value in items:
        if key in out:
            return None
        out[key] = value
    return out


async def _fail_session(
    session: AsyncSession,
    *,
    row: ConnectSession,
    flow: OAuthFlow | None,
    error_code: str,
    oauth_failed: bool = True,
) -> None:
    """Mark the session (and flow) failed and emit ``connect_session.failed``. With
    ``oauth_failed`` the reserved connection is told too (not when the OAuth leg succeeded
    and only the Fivetran side failed: onboarding keeps its own state and reason then)."""
    code = _session_code(error_code)
    now = utcnow()
    if flow is not None:
        flow.status = "failed"
        flow.error = code
    if row.status == "pending":
        row.status = "failed"
        row.error = code
        row.completed_at = now
        connection = await session.get(Connection, row.connection_id)
        if connection is not None and oauth_failed:
            await fail_oauth(session, connection, error_code=code)
        await _emit_outcome(session, row, connection_id=row.connection_id, error=code)
    await session.flush()


async def _emit_outcome(
    session: AsyncSession, row: ConnectSession, *, connection_id: str, error: str | None = None
) -> None:
    """Emit ``connect_session.failed`` (with ``error``) or, without one,
    ``connect_session.completed`` for ``row``."""
    data: dict[str, Any] = {
        "session_id": row.id,
        "service": row.service,
        "connection_id": connection_id,
    }
    if error is not None:
        data["error"] = error
    data["reauthorization"] = row.reauthorization
    await emit(
        session,
        kind="connect_session.failed" if error is not None else "connect_session.completed",
        data=data,
        connection_id=connection_id,
        end_user_external_id=row.end_user_external_id,
    )


def _back_to_app(row: ConnectSession, *, status: str, **params: str) -> BrowserResult:
    query = {"session_id": row.id, "status": status, **params}
    return BrowserResult(location=with_query(row.return_to, query), clear_binding_cookie=True)


async def handle_callback(
    session: AsyncSession,
    app_state: AppState,
    *,
    provider_key: str,
    query: Sequence[tuple[str, str]],
    binding_cookie: str | None,
) -> BrowserResult:
    """The provider's redirect target. See the module docstring for the order of checks."""
    registry = app_state.providers
    provider = registry.find(provider_key)
    if provider is None:
        return BrowserResult.error_page("unknown_provider", 404)
    params = _single_params(query)
    if params is None:
        return BrowserResult.error_page("invalid_callback")

    # Provider-signed callbacks (Shopify HMAC) are checked before anything else.
    try:
        credentials = await registry.credentials(session, provider.key)
        provider.verify_callback(params, credentials.client_secret)
    except (CallbackVerificationError, LookupError):
        log.warning("oauth callback signature rejected", extra={"provider": provider.key})
        return BrowserResult.error_page("invalid_callback")

    consumed = await _consume_state(session, params.get("state"))
    if isinstance(consumed, BrowserResult):
        return consumed
    row, flow = consumed
    checked = await _check_callback(
        session,
        app_state,
        row=row,
        flow=flow,
        provider=provider,
        params=params,
        binding_cookie=binding_cookie,
    )
    if isinstance(checked, BrowserResult):
        return checked
    exchanged = await _exchange(
        session, app_state, row=row, flow=flow, provider=provider, params=params, code=checked
    )
    if isinstance(exchanged, BrowserResult):
        return exchanged
    row, flow, token_result = exchanged
    return await _complete(session, app_state, row=row, flow=flow, token_result=token_result)


async def _fail_flow(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    error_code: str,
) -> None:
    """A callback refused after its state was consumed: fail the session, shred the verifier."""
    await _fail_session(session, row=row, flow=flow, error_code=error_code)
    await _shred_verifier(session, app_state, flow)


async def _consume_state(
    session: AsyncSession, state: str | None
) -> tuple[ConnectSession, OAuthFlow] | BrowserResult:
    """R2: consume the flow's single-use ``state`` atomically and commit (a replay must fail
    even if we crash from here on); the session and flow it belongs to."""
    if not state:
        return BrowserResult.error_page("invalid_state")
    state_hash = _sha256(state)
    now = utcnow()
    # The row count decides who owns this callback.
    result = await session.execute(
        update(OAuthFlow)
        .where(
            OAuthFlow.state_hash == state_hash,
            OAuthFlow.consumed_at.is_(None),
            OAuthFlow.expires_at > now,
        )
        .values(consumed_at=now, status="consumed")
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        await session.rollback()
        log.info("oauth callback with unknown, used or expired state")
        return BrowserResult.error_page("invalid_state")
    # Durable point "state consumed".
    await session.commit()

    flow = await session.scalar(select(OAuthFlow).where(OAuthFlow.state_hash == state_hash))
    assert flow is not None
    row = await session.get(ConnectSession, flow.session_id)
    assert row is not None
    return row, flow


async def _check_callback(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: Provider,
    params: dict[str, str],
    binding_cookie: str | None,
) -> str | BrowserResult:
    """R8, R3, R9, R24 in that order, then the code itself; the code when all pass."""

    async def fail(error_code: str) -> None:
        await _fail_flow(session, app_state, row=row, flow=flow, error_code=error_code)

    # R8: the callback path must be the flow's provider.
    if flow.provider_key != provider.key:
        await fail("invalid_callback")
        return BrowserResult.error_page("provider_mismatch", row=row)
    # R3: the browser that started the flow.
    if not binding_cookie or not hmac.compare_digest(
        _sha256(binding_cookie).encode(), flow.ua_binding_hash.encode()
    ):
        await fail("invalid_callback")
        log.warning("oauth callback without the browser binding", extra={"flow_id": flow.id})
        return BrowserResult.error_page("browser_mismatch", row=row)
    # R9 (RFC 9207): iss must be the flow's issuer; missing iss rejected when advertised.
    iss = params.get("iss")
    if (iss is not None and iss != flow.issuer) or (iss is None and flow.iss_parameter_supported):
        await fail("issuer_mismatch")
        log.warning("oauth callback issuer mismatch", extra={"flow_id": flow.id})
        return _back_to_app(row, status="error", error="issuer_mismatch")
    # R24: an error answer from the (verified) authorization server.
    if "error" in params:
        code = _session_code(params["error"])
        await fail(code)
        return _back_to_app(row, status="error", error=code)
    if await key_is_revoked(session, row.caller_key_id):  # sessions die with their key
        await _fail_session(session, row=row, flow=flow, error_code="key_revoked")
        await _shred_verifier(session, app_state, flow)
        return _back_to_app(row, status="error", error="key_revoked")
    code_value = provider.callback_code(params)
    if not code_value:
        await fail("invalid_callback")
        return _back_to_app(row, status="error", error="invalid_callback")
    return code_value


async def _exchange(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: Provider,
    params: dict[str, str],
    code: str,
) -> tuple[ConnectSession, OAuthFlow, TokenResult] | BrowserResult:
    """R11: exchange the code once, with what the flow pinned at start; then seal and commit
    the tokens (durable point "tokens stored", before any Fivetran call)."""
    try:
        verifier = await app_state.vault.get(
            session,
            end_user_id=flow.end_user_id,
            owner_type=FLOW_OWNER,
            owner_id=flow.id,
            field="code_verifier",
        )
        if verifier is None:
            raise OAuthProviderError("invalid_callback", provider_key=provider.key)
        credentials = await app_state.providers.credentials(session, provider.key)
        token_result = await exchange_code(
            provider,
            code=code,
            code_verifier=verifier.reveal(),
            redirect_uri=flow.redirect_uri,
            token_endpoint=flow.token_endpoint,
            credentials=credentials,
            issuer=flow.issuer,
            transport=app_state.outbound_transport,
            requested_scope=flow.requested_scope,
            callback_params=params,
        )
    except VaultError:
        await _fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error("oauth flow verifier unreadable", extra={"flow_id": flow.id})
        return _back_to_app(row, status="error", error="vault_error")
    except OAuthProviderError as exc:
        await _fail_flow(session, app_state, row=row, flow=flow, error_code=exc.error_code)
        log.info(
            "oauth code exchange failed",
            extra={"flow_id": flow.id, "provider": provider.key, "error": exc.error_code},
        )
        return _back_to_app(row, status="error", error=_session_code(exc.error_code))

    # The account check comes first after the exchange: nothing is stored before it.
    decision = await _check_account(
        session,
        app_state,
        row=row,
        flow=flow,
        provider=provider,
        params=params,
        token_result=token_result,
    )
    if isinstance(decision, BrowserResult):
        return decision

    try:
        await store_grant(
            session,
            app_state,
            end_user_id=flow.end_user_id,
            connection_id=flow.connection_id,
            token_result=token_result,
            token_endpoint=flow.token_endpoint,
        )
        connection = await session.get(Connection, flow.connection_id)
        if connection is not None:
            record_account(connection, decision.identity, decision.duplicate_of)
    except VaultError as exc:
        row, flow = await _after_rollback(session, row.id, flow.id)
        await _fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error(
            "oauth tokens could not be sealed",
            extra={"flow_id": flow.id, "error": exc.code},
        )
        return _back_to_app(row, status="error", error="vault_error")
    flow.status = "exchanged"
    await _shred_verifier(session, app_state, flow, flush=False)
    await session.commit()
    return row, flow, token_result


async def _check_account(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: Provider,
    params: dict[str, str],
    token_result: TokenResult,
) -> AccountAccepted | BrowserResult:
    """The connected account's identity, checked right after the exchange
    (:mod:`app.connect.identity`): accepted (to be recorded with the tokens), or the browser
    answer of a refusal / ``return_existing`` (the new tokens already revoked or dropped)."""
    decision = await check_account(
        session,
        app_state,
        row=row,
        provider=provider,
        token_result=token_result,
        callback_params=params,
    )
    if isinstance(decision, AccountAccepted):
        return decision
    await _shred_verifier(session, app_state, flow)
    if isinstance(decision, ReturnExisting):
        reserved = await session.get(Connection, row.connection_id)
        if reserved is not None and reserved.id != decision.connection_id:
            await discard_reserved_connection(
                session, reserved, reason="account_already_connected:returned_existing"
            )
        row.connection_id = decision.connection_id
        row.existing_connection_id = decision.connection_id
        row.status = "completed"
        row.completed_at = utcnow()
        flow.status = "completed"
        await _emit_outcome(session, row, connection_id=decision.connection_id)
        await session.flush()
        existing = await session.get(Connection, decision.connection_id)
        # The existing connection may still wait for its account choice (pickers).
        waiting = existing is not None and existing.state == states.NEEDS_CONFIGURATION
        status = "needs_configuration" if waiting else "connected"
        return _back_to_app(row, status=status, connection_id=decision.connection_id)
    row.existing_connection_id = decision.existing_connection_id
    await _fail_session(
        session, row=row, flow=flow, error_code=decision.error, oauth_failed=not row.reauthorization
    )
    extra = (
        {"existing_connection_id": decision.existing_connection_id}
        if decision.existing_connection_id
        else {}
    )
    return _back_to_app(row, status="error", error=decision.error, **extra)


async def _complete(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    token_result: TokenResult,
) -> BrowserResult:
    connection = await session.get(Connection, row.connection_id)
    if connection is None:
        await _fail_session(session, row=row, flow=flow, error_code="connection_failed")
        return _back_to_app(row, status="error", error="connection_failed")
    if _needs_configuration(app_state, row, connection):
        return await _await_configuration(
            session, app_state, row=row, flow=flow, connection=connection, token_result=token_result
        )
    return await finish_with_connection(
        session,
        row=row,
        flow=flow,
        complete=lambda: complete_oauth(
            session, app_state, connection=connection, token_result=token_result
        ),
    )


async def finish_with_connection(
    session: AsyncSession,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    complete: Callable[[], Awaitable[Connection]],
    what: str = "connection",
) -> BrowserResult:
    """Run ``complete`` (the Fivetran create or re-authorization after the tokens' commit)
    and end the session by its outcome: completed when the connection is ``connected``,
    failed with an allow-listed code otherwise (OAuth 2.0 and OAuth 1.0a flows alike)."""
    row_id, flow_id = row.id, flow.id
    try:
        connection = await complete()
    except AppError as exc:
        row, flow = await _after_rollback(session, row_id, flow_id)
        code = exc.code if exc.code in SESSION_ERROR_CODES else "fivetran_error"
        await _fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
        log.warning(
            f"{what} could not be completed after consent",
            extra={"session_id": row.id, "error": exc.code},
        )
        return _back_to_app(row, status="error", error=code)
    except Exception as exc:
        row, flow = await _after_rollback(session, row_id, flow_id)
        await _fail_session(
            session, row=row, flow=flow, error_code="internal_error", oauth_failed=False
        )
        log.error(
            f"{what} completion crashed",
            extra={"session_id": row.id, "error_type": type(exc).__name__},
        )
        return _back_to_app(row, status="error", error="internal_error")
    if connection.state == "connected":
        row.status = "completed"
        row.completed_at = utcnow()
        flow.status = "completed"
        await _emit_outcome(session, row, connection_id=connection.id)
        await session.flush()
        return _back_to_app(row, status="connected", connection_id=connection.id)
    code = "setup_failed" if connection.state == "setup_failed" else "connection_failed"
    await _fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
    return _back_to_app(row, status="error", error=code, connection_id=connection.id)


def _needs_configuration(app_state: AppState, row: ConnectSession, connection: Connection) -> bool:
    """A new connection of a provider with a post-consent choice (account pickers): it waits
    in ``needs_configuration`` instead of being created at Fivetran. Re-authorizations of a
    connection that exists at Fivetran keep their selection."""
    provider = app_state.providers.find(row.provider_key)
    return (
        provider is not None
        and provider.spec.picker is not None
        and not row.reauthorization
        and connection.fivetran_connection_id is None
    )


async def _await_configuration(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    connection: Connection,
    token_result: TokenResult,
) -> BrowserResult:
    """Consent done, choice pending: the connection goes to ``needs_configuration`` (event
    ``connection.needs_configuration``), the session is ``completed`` and the browser goes
    back with ``status=needs_configuration`` and the ``connection_id``. The caller lists the
    choices (``GET /v1/connections/{id}/options``) and submits one (``…/configure``)."""
    row_id, flow_id = row.id, flow.id
    try:
        connection = await await_configuration(
            session, app_state, connection=connection, token_result=token_result
        )
    except AppError as exc:
        row, flow = await _after_rollback(session, row_id, flow_id)
        code = exc.code if exc.code in SESSION_ERROR_CODES else "connection_failed"
        await _fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
        return _back_to_app(row, status="error", error=code)
    row.status = "completed"
    row.completed_at = utcnow()
    flow.status = "completed"
    await _emit_outcome(session, row, connection_id=connection.id)
    await session.flush()
    return _back_to_app(row, status="needs_configuration", connection_id=connection.id)


async def _after_rollback(
    session: AsyncSession, row_id: str, flow_id: str
) -> tuple[ConnectSession, OAuthFlow]:
    """Roll back a failed step and reload the session and flow rows (tokens stay stored)."""
    await session.rollback()
    row = await session.get(ConnectSession, row_id, populate_existing=True)
    flow = await session.get(OAuthFlow, flow_id, populate_existing=True)
    assert row is not None and flow is not None
    return row, flow


async def _shred_verifier(
    session: AsyncSession, app_state: AppState, flow: OAuthFlow, *, flush: bool = True
) -> None:
    # Every secret of the flow: the PKCE verifier, or an OAuth 1.0a request token's secret.
    await app_state.vault.delete(session, owner_type=FLOW_OWNER, owner_id=flow.id)
    if flush:
        await session.flush()


async def store_grant(
    session: AsyncSession,
    app_state: AppState,
    *,
    end_user_id: str,
    connection_id: str,
    token_result: TokenResult,
    token_endpoint: str | None,
) -> OAuthGrant:
    """Seal the tokens in the vault (owner ``connection``) and record the grant's metadata."""
    vault = app_state.vault
    await keep_replaced_refresh_token(
        session,
        app_state,
        end_user_id=end_user_id,
        connection_id=connection_id,
        new_token=token_result.refresh_token,
    )
    for field_name in ("access_token", "refresh_token"):
        value = getattr(token_result, field_name)
        if value is not None:
            await vault.put(
                session,
                end_user_id=end_user_id,
                owner_type=CONNECTION_OWNER,
                owner_id=connection_id,
                field=field_name,
                value=value,
            )
        else:
            await vault.delete(
                session, owner_type=CONNECTION_OWNER, owner_id=connection_id, field=field_name
            )
    grant = await session.get(OAuthGrant, connection_id)
    if grant is None:
        grant = OAuthGrant(connection_id=connection_id, generation=0, needs_reauth=False)
        session.add(grant)
    grant.end_user_id = end_user_id
    grant.provider_key = token_result.provider_key
    grant.issuer = token_result.issuer
    grant.client_id = token_result.client_id
    grant.token_endpoint = token_endpoint
    grant.granted_scope = token_result.granted_scope
    grant.has_refresh_token = token_result.refresh_token is not None
    grant.obtained_at = utcnow()
    grant.access_token_expires_at = token_result.expires_at
    grant.needs_reauth = False
    await session.flush()
    return grant


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
    row.token_hash = _sha256(token)
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
            await _shred_verifier(session, app_state, flow, flush=False)
        if not row.reauthorization:
            connection = await session.get(Connection, row.connection_id)
            if connection is not None:
                await fail_oauth(session, connection, error_code="expired")
        await _emit_outcome(session, row, connection_id=row.connection_id, error="expired")
    await session.flush()
    if rows:
        log.info("connect sessions expired", extra={"count": len(rows)})
    return len(rows)
