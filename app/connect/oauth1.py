"""The OAuth 1.0a (RFC 5849) browser flow: X (Twitter) organic and X Ads.

Same machinery as the OAuth 2.0 flow (:mod:`app.connect.service`): connect session,
confirmation page, single-use start token, ``__Host-`` binding cookie, one ``oauth_flows`` row
per start, single-use consumption of the callback, error codes, events and ``return_to``. What
differs is the protocol:

* **Start** (``POST /connect/{token}``, R4): the start token is consumed (first statement of
  the transaction, as for OAuth 2.0), then a request token
  is obtained from the provider, signed with our consumer credentials (HMAC-SHA1, authlib),
  with ``oauth_callback`` = our one configured callback URL ``<public_base_url>/oauth/callback/
  <provider>`` (R7; never from request headers). The **request token plays the role of
  ``state``**: only its SHA-256 is stored (``state_hash``); its secret is sealed in the vault
  (owner ``oauth_flow``, field ``request_token_secret``) and shredded once used. The browser
  is bound (R3) and sent ``303`` to the provider's authorize URL.
* **Callback** (``GET /oauth/callback/<provider>?oauth_token&oauth_verifier``): the flow row
  is consumed atomically by the request token (R2; a replayed or foreign ``oauth_token`` finds
  nothing), then the provider path (R8) and the binding cookie (R3) are checked, then a denial
  (``denied=<request token>``, X's way, or ``error``) fails the session (R24). Only then is the
  verifier exchanged, once, at the access-token URL pinned in the flow row (R11), signed with
  the request token's secret. The token credentials are sealed in the vault and committed
  **before any Fivetran call**; the connection is then created with the ``auth`` block of
  Fivetran's twitter/twitter_ads schema and the browser is sent to ``return_to`` (R15).

There is no ``iss`` in OAuth 1.0a (R9 does not apply) and no PKCE (R5): the verifier is bound
to the request token, whose secret never leaves the server, and to the browser by R3.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import key_is_revoked
from app.connect.models import ConnectSession, OAuthFlow
from app.connect.outcomes import (
    FLOW_OWNER,
    BrowserResult,
    after_rollback,
    back_to_app,
    consume_state,
    fail_flow,
    fail_session,
    finish_with_connection,
    session_code,
    sha256_hex,
    shred_verifier,
    single_params,
)
from app.connect.service import record_flow, redirect_uri_for
from app.connections.models import Connection
from app.connections.oauth1 import complete_oauth1, store_oauth1_grant
from app.providers.errors import OAuthProviderError
from app.providers.oauth1 import (
    OAuth1Provider,
    OAuth1Token,
    authorization_url,
    fetch_access_token,
    fetch_request_token,
)
from app.state import AppState
from app.vault.errors import VaultError

log = logging.getLogger("pbf.connect.oauth1")

SECRET_FIELD = "request_token_secret"


def provider_of(app_state: AppState, provider_key: str | None) -> OAuth1Provider | None:
    """The OAuth 1.0a provider of that key, if it is one."""
    if not provider_key:
        return None
    return app_state.providers.oauth1.find(provider_key)


async def start_for_session(
    session: AsyncSession, app_state: AppState, row: ConnectSession
) -> BrowserResult:
    """For a session whose start token was just consumed (:func:`app.connect.service.
    start_flow`): obtain a request token, bind the browser, redirect to the provider."""
    settings = app_state.settings
    provider = app_state.providers.oauth1.get(row.provider_key)
    endpoints = provider.endpoints()
    callback = redirect_uri_for(settings, provider.key)
    try:
        request_token, request_secret = await fetch_request_token(
            provider,
            callback_url=callback,
            request_token_url=endpoints.request_token_url,
            transport=app_state.outbound_transport,
        )
    except OAuthProviderError as exc:
        await fail_session(session, row=row, flow=None, error_code=exc.error_code)
        log.info(
            "oauth1 request token refused",
            extra={"session_id": row.id, "provider": provider.key, "error": exc.error_code},
        )
        return back_to_app(row, status="error", error=session_code(exc.error_code))
    binding = secrets.token_urlsafe(32)
    flow = await record_flow(
        session,
        app_state,
        row,
        state=request_token,
        binding=binding,
        issuer=endpoints.issuer,
        iss_parameter_supported=False,
        authorization_endpoint=endpoints.authorization_url,
        token_endpoint=endpoints.access_token_url,
        client_id=provider.credentials.client_id,
        redirect_uri=callback,
        requested_scope=None,
        secret_field=SECRET_FIELD,
        secret=request_secret,
    )
    log.info(
        "oauth1 flow started",
        extra={"session_id": row.id, "flow_id": flow.id, "provider": provider.key},
    )
    return BrowserResult(
        location=authorization_url(endpoints.authorization_url, request_token),
        set_binding_cookie=binding,
    )


async def handle_callback(
    session: AsyncSession,
    app_state: AppState,
    *,
    provider: OAuth1Provider,
    query: Sequence[tuple[str, str]],
    binding_cookie: str | None,
) -> BrowserResult:
    """The provider's redirect target (see the module docstring for the order of checks)."""
    params = single_params(query)
    if params is None:
        return BrowserResult.error_page("invalid_callback")
    # X answers a denial with ``denied=<request token>`` (no oauth_token).
    request_token = params.get("oauth_token") or params.get("denied")
    consumed = await consume_state(session, request_token)
    if isinstance(consumed, BrowserResult):
        return consumed
    row, flow = consumed

    # R8: the callback path must be the flow's provider.
    if flow.provider_key != provider.key:
        await fail_flow(session, app_state, row=row, flow=flow, error_code="invalid_callback")
        return BrowserResult.error_page("provider_mismatch", row=row)
    # R3: the browser that started the flow.
    if not binding_cookie or not hmac.compare_digest(
        sha256_hex(binding_cookie).encode(), flow.ua_binding_hash.encode()
    ):
        await fail_flow(session, app_state, row=row, flow=flow, error_code="invalid_callback")
        log.warning("oauth1 callback without the browser binding", extra={"flow_id": flow.id})
        return BrowserResult.error_page("browser_mismatch", row=row)
    # R24: the end-user said no.
    if "denied" in params or "error" in params:
        code = "access_denied" if "denied" in params else session_code(params["error"])
        await fail_flow(session, app_state, row=row, flow=flow, error_code=code)
        return back_to_app(row, status="error", error=code)
    if await key_is_revoked(session, row.caller_key_id):  # sessions die with their key
        await fail_flow(session, app_state, row=row, flow=flow, error_code="key_revoked")
        return back_to_app(row, status="error", error="key_revoked")
    verifier = params.get("oauth_verifier")
    if not verifier or request_token is None or params.get("oauth_token") != request_token:
        await fail_flow(session, app_state, row=row, flow=flow, error_code="invalid_callback")
        return back_to_app(row, status="error", error="invalid_callback")

    try:
        secret = await app_state.vault.get(
            session,
            end_user_id=flow.end_user_id,
            owner_type=FLOW_OWNER,
            owner_id=flow.id,
            field=SECRET_FIELD,
        )
        if secret is None:
            raise OAuthProviderError("invalid_callback", provider_key=provider.key)
        token = await fetch_access_token(
            provider,
            access_token_url=flow.token_endpoint,
            request_token=request_token,
            request_token_secret=secret,
            verifier=verifier,
            transport=app_state.outbound_transport,
        )
    except VaultError:
        await fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error("oauth1 request token secret unreadable", extra={"flow_id": flow.id})
        return back_to_app(row, status="error", error="vault_error")
    except OAuthProviderError as exc:
        await fail_flow(session, app_state, row=row, flow=flow, error_code=exc.error_code)
        log.info(
            "oauth1 access token exchange failed",
            extra={"flow_id": flow.id, "provider": provider.key, "error": exc.error_code},
        )
        return back_to_app(row, status="error", error=session_code(exc.error_code))

    connection = await session.get(Connection, row.connection_id)
    if connection is None:
        await fail_flow(session, app_state, row=row, flow=flow, error_code="connection_failed")
        return back_to_app(row, status="error", error="connection_failed")
    try:
        await store_oauth1_grant(
            session, app_state, connection=connection, provider=provider, token=token
        )
    except VaultError as exc:
        row, flow = await after_rollback(session, row.id, flow.id)
        await fail_flow(session, app_state, row=row, flow=flow, error_code="vault_error")
        log.error(
            "oauth1 tokens could not be sealed", extra={"flow_id": flow.id, "error": exc.code}
        )
        return back_to_app(row, status="error", error="vault_error")
    flow.status = "exchanged"
    await shred_verifier(session, app_state, flow, flush=False)
    await session.commit()  # durable point "tokens stored", before any Fivetran call
    return await _complete(session, app_state, row=row, flow=flow, provider=provider, token=token)


async def _complete(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    flow: OAuthFlow,
    provider: OAuth1Provider,
    token: OAuth1Token,
) -> BrowserResult:
    connection = await session.get(Connection, row.connection_id)
    assert connection is not None
    return await finish_with_connection(
        session,
        row=row,
        flow=flow,
        complete=lambda: complete_oauth1(
            session, app_state, connection=connection, provider=provider, token=token
        ),
        what="oauth1 connection",
    )
