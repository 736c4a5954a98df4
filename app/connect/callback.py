"""The OAuth 2.0 callback: from the provider's ``code`` to the Fivetran connection.

Order of work (oauth-security.md): the provider-signed callback (Shopify HMAC) first; the
single-use ``state`` consumed and committed (R2); the provider path (R8), the browser binding
(R3) and ``iss`` (R9) checked before ``error`` (R24) or ``code`` are read; the code exchanged
once with the flow's verifier, redirect URI and token endpoint (R11, :mod:`app.providers.
client`); the connected account checked (:mod:`app.connect.identity`) before anything is
stored; the tokens sealed in the vault and **committed before any Fivetran call** (durable
point "tokens stored"). The provider's Fivetran ``auth`` values are taken from the fresh
tokens right there, with the app credentials the exchange used, and handed to
:func:`app.connections.service.complete_oauth`, whose payload builder
(:mod:`app.fivetran.payloads`) alone places them in the create (or re-authorization) body.
Sources with a choice after consent (account pickers) wait in ``needs_configuration``.

The code's path, one way: ``connect.router`` → ``connect.callback`` →
``providers.client`` (tokens) → ``providers.registry`` (auth values) →
``connections.service`` → ``fivetran.payloads`` (the ``auth`` block).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import key_is_revoked
from app.connect.identity import (
    AccountAccepted,
    ReturnExisting,
    check_account,
    record_account,
)
from app.connect.models import ConnectSession, OAuthFlow, OAuthGrant
from app.connect.outcomes import (
    FLOW_OWNER,
    SESSION_ERROR_CODES,
    BrowserResult,
    after_rollback,
    back_to_app,
    consume_state,
    emit_outcome,
    fail_flow,
    fail_session,
    finish_with_connection,
    session_code,
    sha256_hex,
    shred_verifier,
    single_params,
)
from app.connections import states
from app.connections.configuration import await_configuration
from app.connections.models import Connection
from app.connections.replaced_tokens import keep_replaced_refresh_token
from app.connections.service import OWNER as TOKENS_OWNER
from app.connections.service import (
    complete_oauth,
    discard_reserved_connection,
)
from app.db import utcnow
from app.errors import AppError
from app.providers.client import exchange_code
from app.providers.errors import (
    CallbackVerificationError,
    OAuthProviderError,
)
from app.providers.registry import AppCredentials, Provider
from app.providers.tokens import TokenResult
from app.state import AppState
from app.vault.errors import VaultError

log = logging.getLogger("pbf.connect")


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
    params = single_params(query)
    if params is None:
        return BrowserResult.error_page("invalid_callback")

    # Provider-signed callbacks (Shopify HMAC) are checked before anything else.
    try:
        credentials = await registry.credentials(session, provider.key)
        provider.verify_callback(params, credentials.client_secret)
    except (CallbackVerificationError, LookupError):
        log.warning("oauth callback signature rejected", extra={"provider": provider.key})
        return BrowserResult.error_page("invalid_callback")

    consumed = await consume_state(session, params.get("state"))
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
        session,
        app_state,
        row=row,
        flow=flow,
        provider=provider,
        credentials=credentials,
        params=params,
        code=checked,
    )
    if isinstance(exchanged, BrowserResult):
        return exchanged
    row, flow, token_result = exchanged
    return await _complete(
        session,
        app_state,
        row=row,
        flow=flow,
        provider=provider,
        credentials=credentials,
        token_result=token_result,
    )


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
        await fail_flow(session, app_state, row=row, flow=flow, error_code=error_code)

    # R8: the callback path must be the flow's provider.
    if flow.provider_key != provider.key:
        await fail("invalid_callback")
        return BrowserResult.error_page("provider_mismatch", row=row)
    # R3: the browser that started the flow.
    if not binding_cookie or not hmac.compare_digest(
        sha256_hex(binding_cookie).encode(), flow.ua_binding_hash.encode()
    ):
        await fail("invalid_callback")
        log.warning("oauth callback without the browser binding", extra={"flow_id": flow.id})
        return BrowserResult.error_page("browser_mismatch", row=row)
    # R9 (RFC 9207): iss must be the flow's issuer; missing iss rejected when advertised.
    iss = params.get("iss")
    if (iss is not None and iss != flow.issuer) or (iss is None and flow.iss_parameter_supported):
        await fail("issuer_mismatch")
        log.warning("oauth callback issuer mismatch", extra={"flow_id": flow.id})
        return back_to_app(row, status="error", error="issuer_mismatch")
    # R24: an error answer from the (verified) authorization server.
    if "error" in params:
        code = session_code(params["error"])
        await fail(code)
        return back_to_app(row, status="error", error=code)
    if await key_is_revoked(session, row.caller_key_id):  # sessions die with their key
        await fail_session(session, row=row, flow=flow, error_code="key_revoked")
        await shred_verifier(session, app_state, flow)
        return back_to_app(row, status="error", error="key_revoked")
    code_value = provider.callback_code(params)
    if not code_value:
        await fail("invalid_callback")
        return back_to_app(row, status="error", error="invalid_callback")
    return code_value


async def _exchange(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: Provider,
    credentials: AppCredentials,
    params: dict[str, str],
    code: str,
) -> tuple[ConnectSession, OAuthFlow, TokenResult] | BrowserResult:
    """R11: exchange the code once, with what the flow pinned at start and the app
    ``credentials`` the callback read; then seal and commit the tokens (durable point
    "tokens stored", before any Fivetran call)."""
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
        await fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error("oauth flow verifier unreadable", extra={"flow_id": flow.id})
        return back_to_app(row, status="error", error="vault_error")
    except OAuthProviderError as exc:
        await fail_flow(session, app_state, row=row, flow=flow, error_code=exc.error_code)
        log.info(
            "oauth code exchange failed",
            extra={"flow_id": flow.id, "provider": provider.key, "error": exc.error_code},
        )
        return back_to_app(row, status="error", error=session_code(exc.error_code))

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
        row, flow = await after_rollback(session, row.id, flow.id)
        await fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error(
            "oauth tokens could not be sealed",
            extra={"flow_id": flow.id, "error": exc.code},
        )
        return back_to_app(row, status="error", error="vault_error")
    flow.status = "exchanged"
    await shred_verifier(session, app_state, flow, flush=False)
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
    await shred_verifier(session, app_state, flow)
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
        await emit_outcome(session, row, connection_id=decision.connection_id)
        await session.flush()
        existing = await session.get(Connection, decision.connection_id)
        # The existing connection may still wait for its account choice (pickers).
        waiting = existing is not None and existing.state == states.NEEDS_CONFIGURATION
        status = "needs_configuration" if waiting else "connected"
        return back_to_app(row, status=status, connection_id=decision.connection_id)
    row.existing_connection_id = decision.existing_connection_id
    await fail_session(
        session, row=row, flow=flow, error_code=decision.error, oauth_failed=not row.reauthorization
    )
    extra = (
        {"existing_connection_id": decision.existing_connection_id}
        if decision.existing_connection_id
        else {}
    )
    return back_to_app(row, status="error", error=decision.error, **extra)


async def _complete(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: Provider,
    credentials: AppCredentials,
    token_result: TokenResult,
) -> BrowserResult:
    """Hand the stored tokens on: the provider's Fivetran parts, taken from them with the
    exchange's app credentials, go to onboarding's create (or re-authorization); a source
    with a choice after consent waits for it instead."""
    connection = await session.get(Connection, row.connection_id)
    if connection is None:
        await fail_session(session, row=row, flow=flow, error_code="connection_failed")
        return back_to_app(row, status="error", error="connection_failed")
    if _needs_configuration(app_state, row, connection):
        return await _await_configuration(
            session, app_state, row=row, flow=flow, connection=connection, token_result=token_result
        )
    return await finish_with_connection(
        session,
        row=row,
        flow=flow,
        complete=lambda: complete_oauth(
            session,
            app_state,
            connection=connection,
            token_result=token_result,
            parts=provider.fivetran_parts(token_result, credentials, connection.config),
        ),
    )


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
        row, flow = await after_rollback(session, row_id, flow_id)
        code = exc.code if exc.code in SESSION_ERROR_CODES else "connection_failed"
        await fail_session(session, row=row, flow=flow, error_code=code, oauth_failed=False)
        return back_to_app(row, status="error", error=code)
    row.status = "completed"
    row.completed_at = utcnow()
    flow.status = "completed"
    await emit_outcome(session, row, connection_id=connection.id)
    await session.flush()
    return back_to_app(row, status="needs_configuration", connection_id=connection.id)


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
                owner_type=TOKENS_OWNER,
                owner_id=connection_id,
                field=field_name,
                value=value,
            )
        else:
            await vault.delete(
                session, owner_type=TOKENS_OWNER, owner_id=connection_id, field=field_name
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
