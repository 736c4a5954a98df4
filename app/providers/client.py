"""Token-endpoint client: authorization URLs, code exchange, refresh and revocation.

Authlib's ``AsyncOAuth2Client`` is used **only as a token-endpoint client**, one instance per
call, on the shared outbound transport (``app.state.outbound_transport``):

* ``code_challenge_method="S256"`` is set whenever the provider uses PKCE (authlib silently
  drops the challenge otherwise); ``plain`` is never used (R5);
* no constructor ``scope`` (authlib would re-send it on refresh → ``invalid_scope``); scope is
  re-sent on refresh only for providers that require it (``refresh_sends_scope``, bingads);
* ``client_secret_basic`` is registered as a custom method that form-urlencodes id and secret
  before base64 (RFC 6749 §2.3.1, R13); ``raw_basic`` keeps authlib's raw encoding for
  non-conforming servers; ``json_body`` sends a JSON body (TikTok);
* ``follow_redirects=False`` and explicit timeouts (R14): a 3xx from the token endpoint is an
  error and never produces a second request;
* one compliance hook per client normalises quirky responses (token nested under a key,
  ``expires_in`` as a string, missing ``token_type``, errors with HTTP 200, form-encoded
  bodies) before the token response is validated (R12).

Errors are :class:`~app.providers.errors.OAuthProviderError` with an allow-listed
``error_code``; the provider's ``error_description`` is dropped. Nothing here logs tokens.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import warnings
from collections.abc import Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit, urlunsplit

import httpx
from authlib.common.urls import url_decode
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.client import OAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from app.db import utcnow
from app.providers.errors import OAuthProviderError
from app.providers.hooks import ExchangeContext
from app.providers.registry import AppCredentials, Provider
from app.providers.tokens import TokenResult
from app.vault.secret import Secret

with warnings.catch_warnings():
    # The project pins httpx (authlib prefers its "httpx2" fork and warns on the fallback).
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger("pbf.providers.client")

DEFAULT_TIMEOUT_SECONDS = 15.0
#: Largest ``expires_in`` accepted (100 years): beyond it the expiry is not a date.
MAX_EXPIRES_IN = 100 * 365 * 86400
TOKEN_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
}
#: Token-response fields never kept outside the vault (``TokenResult.response_fields``).
SECRET_RESPONSE_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})
#: authlib method names used on the wire for each catalog ``token_auth_method``.
AUTH_METHOD_NAMES = {
    "client_secret_basic": "client_secret_basic_rfc6749",
    "client_secret_post": "client_secret_post",
    "raw_basic": "client_secret_basic",  # authlib's built-in: base64(id:secret), unencoded
    "json_body": "pbf_json_body",
}


# --- client authentication methods ------------------------------------------------------


def basic_rfc6749(
    client: Any, method: str, uri: str, headers: Any, body: Any
) -> tuple[str, Any, Any]:
    """HTTP Basic per RFC 6749 §2.3.1: form-urlencode id and secret, then base64."""
    credentials = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret or '')}"
    headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    return uri, headers, body


def json_body_method(fields: Mapping[str, str]) -> Callable[..., tuple[str, Any, Any]]:
    """Send the token request as JSON with provider field names (TikTok ``app_id``/``secret``)."""

    def encode(client: Any, method: str, uri: str, headers: Any, body: Any) -> tuple[str, Any, Any]:
        text = body.decode() if isinstance(body, bytes) else (body or "")
        form = dict(url_decode(text))
        form["client_id"] = client.client_id
        form["client_secret"] = client.client_secret or ""
        payload = {fields[k]: v for k, v in form.items() if k in fields}
        data = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(data))
        return uri, headers, data

    return encode


# --- response capture and normalisation ---------------------------------------------------


@dataclass
class _Capture:
    """What the compliance hook saw: the raw status and the normalised body."""

    status: int | None = None
    body: dict[str, Any] | None = None
    requests: int = 0
    #: Total deadline of one token call: httpx's timeouts bound each read, not the whole
    #: answer (a token endpoint dripping bytes, or an in-process transport, ignores them).
    deadline_seconds: float | None = None


def _decode_body(resp: httpx.Response) -> dict[str, Any] | None:
    content_type = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    text = resp.text
    if content_type in ("application/x-www-form-urlencoded", "text/plain") and "=" in text:
        if not text.lstrip().startswith("{"):
            pairs = parse_qsl(text, keep_blank_values=True)
            return dict(pairs) if pairs else None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _normalise(provider: Provider, body: dict[str, Any]) -> dict[str, Any]:
    spec = provider.spec
    for hook in provider._hooks:
        if hook.fix_response is not None:
            body = hook.fix_response(body)
    key = spec.token_response_key
    if key and "access_token" not in body and "error" not in body:
        nested = body.get(key)
        if isinstance(nested, dict):
            body = {**nested}
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        body["expires_in"] = int(expires_in.strip())
    if "token_type" not in body and spec.token_type_default and "access_token" in body:
        body["token_type"] = spec.token_type_default
    return body


def _compliance_hook(provider: Provider, capture: _Capture) -> Callable[[httpx.Response], Any]:
    def hook(resp: httpx.Response) -> httpx.Response:
        capture.requests += 1
        capture.status = resp.status_code
        if 300 <= resp.status_code < 400:
            # R14: never follow; the client has follow_redirects=False, so this is final.
            raise OAuthProviderError(
                "token_endpoint_redirect",
                provider_key=provider.key,
                status=resp.status_code,
                message=f"{provider.key}: token endpoint answered with a redirect "
                f"({resp.status_code}); redirects are never followed",
            )
        body = _decode_body(resp)
        if body is None:
            raise OAuthProviderError(
                "server_error" if resp.status_code >= 500 else "invalid_token_response",
                provider_key=provider.key,
                status=resp.status_code,
                message=f"{provider.key}: token endpoint answered HTTP {resp.status_code} "
                "without a JSON object",
            )
        body = _normalise(provider, body)
        capture.body = body
        return httpx.Response(
            resp.status_code,
            json=body,
            headers={"content-type": "application/json"},
            request=resp.request,
        )

    return hook


def _label(target: str) -> Callable[[httpx.Request], Any]:
    async def on_request(request: httpx.Request) -> None:
        request.extensions["pbf_target"] = target

    return on_request


@asynccontextmanager
async def _token_client(
    provider: Provider,
    credentials: AppCredentials,
    *,
    transport: httpx.AsyncBaseTransport | None,
    redirect_uri: str | None = None,
    timeout_seconds: float | None = None,
    auth_method: str | None = None,
) -> Any:
    method = auth_method or provider.token_auth_method
    seconds = timeout_seconds or provider.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
    client = AsyncOAuth2Client(
        client_id=credentials.client_id,
        client_secret=credentials.client_secret.reveal(),
        token_endpoint_auth_method=AUTH_METHOD_NAMES[method],
        revocation_endpoint_auth_method=AUTH_METHOD_NAMES[provider.revocation_auth_method],
        redirect_uri=redirect_uri,
        code_challenge_method="S256" if provider.spec.pkce else None,
        transport=transport,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
        follow_redirects=False,
        trust_env=False,
        event_hooks={"request": [_label(f"oauth:{provider.key}")]},
    )
    client.register_client_auth_method(("client_secret_basic_rfc6749", basic_rfc6749))
    client.register_client_auth_method(
        ("pbf_json_body", json_body_method(provider.spec.json_body_fields))
    )
    capture = _Capture(deadline_seconds=seconds)
    hook = _compliance_hook(provider, capture)
    client.register_compliance_hook("access_token_response", hook)
    client.register_compliance_hook("refresh_token_response", hook)
    async with client:
        yield client, capture


def _error_from(provider: Provider, exc: Exception, capture: _Capture) -> OAuthProviderError:
    if isinstance(exc, OAuthProviderError):
        return exc
    if isinstance(exc, OAuthError):
        return OAuthProviderError(
            str(exc.error or "provider_error"), provider_key=provider.key, status=capture.status
        )
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return OAuthProviderError(
            "server_error" if status >= 500 else "invalid_token_response",
            provider_key=provider.key,
            status=status,
        )
    if isinstance(exc, httpx.TransportError):
        return OAuthProviderError(
            "token_endpoint_unavailable",
            provider_key=provider.key,
            message=f"{provider.key}: token endpoint unreachable ({type(exc).__name__})",
        )
    return OAuthProviderError(
        "invalid_token_response",
        provider_key=provider.key,
        status=capture.status,
        message=f"{provider.key}: unusable token response ({type(exc).__name__})",
    )


async def _call(provider: Provider, capture: _Capture, coro: Any) -> dict[str, Any]:
    try:
        try:
            async with asyncio.timeout(capture.deadline_seconds):
                await coro
        except TimeoutError:
            raise httpx.ReadTimeout("token endpoint deadline exceeded") from None
    # TypeError/OverflowError: authlib's int() of a non-numeric expires_in / expires_at.
    except (
        OAuthProviderError,
        OAuthError,
        httpx.HTTPError,
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
    ) as exc:
        raise _error_from(provider, exc, capture) from None
    if capture.body is None:  # pragma: no cover - the hook always runs on a response
        raise OAuthProviderError("invalid_token_response", provider_key=provider.key)
    return capture.body


# --- validation (R12) ---------------------------------------------------------------------


def _split_scope(value: Any, separator: str) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    if not isinstance(value, str):
        return []
    text = value
    for sep in {separator, ",", " "}:
        text = text.replace(sep, " ")
    return [s for s in text.split(" ") if s]


def validate_token_body(
    provider: Provider, status: int | None, body: dict[str, Any], *, refreshing: bool = False
) -> None:
    """R12: HTTP 200, JSON object, access_token, bearer token_type, sane expires_in, RT."""
    key = provider.key
    if status != 200:
        raise OAuthProviderError(
            "invalid_token_response",
            provider_key=key,
            status=status,
            message=f"{key}: token endpoint answered HTTP {status}, expected 200",
        )
    if "error" in body:
        raise OAuthProviderError(str(body.get("error")), provider_key=key, status=status)
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise OAuthProviderError(
            "invalid_token_response", provider_key=key, message=f"{key}: no access_token"
        )
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuthProviderError(
            "invalid_token_response",
            provider_key=key,
            message=f"{key}: token_type must be bearer",
        )
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise OAuthProviderError(
            "invalid_token_response",
            provider_key=key,
            message=f"{key}: expires_in must be an integer from 0 to {MAX_EXPIRES_IN}",
        )
    refresh_token = body.get("refresh_token")
    if refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token):
        raise OAuthProviderError(
            "invalid_token_response", provider_key=key, message=f"{key}: malformed refresh_token"
        )
    if not refreshing and provider.requires_refresh_token and not refresh_token:
        knob = provider.spec.refresh_token_knob
        hint = f" (check {knob})" if knob else ""
        raise OAuthProviderError(
            "missing_refresh_token",
            provider_key=key,
            message=f"{key}: the provider returned no refresh token{hint}",
        )


def _metadata(provider: Provider, body: Mapping[str, Any]) -> dict[str, str]:
    result: dict[str, str] = {}
    for source, target in provider.spec.token_metadata.items():
        value = body.get(source)
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        result[target] = str(value)
    return result


def _token_result(
    provider: Provider,
    body: dict[str, Any],
    *,
    issuer: str,
    client_id: str,
    requested_scope: str | None,
    callback_metadata: Mapping[str, str] | None = None,
    previous_refresh_token: Secret | None = None,
    refreshing: bool = False,
) -> TokenResult:
    granted_raw = body.get("scope")
    if granted_raw is None:
        # RFC 6749 §5.1: scope omitted = identical to the scope requested.
        granted = _split_scope(requested_scope, provider.spec.scope_separator)
    else:
        granted = _split_scope(granted_raw, provider.spec.scope_separator)
    required_missing = [s for s in provider.required_scopes if s not in granted]
    if required_missing and not refreshing:
        raise OAuthProviderError(
            "insufficient_scope",
            provider_key=provider.key,
            message=f"{provider.key}: the grant lacks required scope(s): "
            f"{', '.join(required_missing)}",
        )
    # Narrower than requested but every required scope present: flagged, not fatal.
    requested = _split_scope(requested_scope, provider.spec.scope_separator)
    missing = tuple(s for s in requested if s not in granted)
    expires_in = body.get("expires_in")
    expires_at = utcnow() + timedelta(seconds=expires_in) if isinstance(expires_in, int) else None
    new_rt = body.get("refresh_token")
    refresh_token: Secret | None
    rotated: bool | None = None
    if refreshing:
        old = previous_refresh_token.reveal() if previous_refresh_token else None
        rotated = bool(new_rt) and new_rt != old
        refresh_token = Secret(new_rt) if new_rt else previous_refresh_token
    else:
        refresh_token = Secret(new_rt) if new_rt else None
    metadata = dict(callback_metadata or {})
    metadata.update(_metadata(provider, body))
    return TokenResult(
        provider_key=provider.key,
        access_token=Secret(body["access_token"]),
        refresh_token=refresh_token,
        expires_at=expires_at,
        granted_scope=" ".join(granted) if granted else None,
        issuer=issuer,
        client_id=client_id,
        metadata=metadata,
        missing_scopes=missing,
        rotated=rotated,
        token_type="bearer",
        response_fields={k: v for k, v in body.items() if k not in SECRET_RESPONSE_FIELDS},
        id_token=Secret(body["id_token"]) if isinstance(body.get("id_token"), str) else None,
    )


# --- public API ---------------------------------------------------------------------------


def scope_string(provider: Provider, scopes: list[str] | tuple[str, ...] | None = None) -> str:
    """The scope string sent in the authorization request ('' when the provider takes none)."""
    chosen = list(scopes) if scopes is not None else list(provider.scopes)
    return provider.spec.scope_separator.join(chosen)


def build_authorization_url(
    provider: Provider,
    *,
    client_id: str,
    state: str,
    code_verifier: str | None,
    redirect_uri: str,
    inputs: Mapping[str, Any] | None = None,
    scopes: list[str] | tuple[str, ...] | None = None,
    authorization_endpoint: str | None = None,
    login_hint: str | None = None,
) -> str:
    """The provider's authorization URL (PKCE S256, exact redirect URI, provider extras).

    ``authorization_endpoint`` defaults to the provider's endpoint for ``inputs``;
    ``login_hint`` is passed through (the sandbox server understands ``auto`` and ``deny``).
    """
    url = authorization_endpoint or provider.endpoints(inputs).authorization_url
    spec = provider.spec
    if spec.pkce and not code_verifier:
        raise ValueError(f"{provider.key} uses PKCE: a code_verifier is required")
    builder = OAuth2Client(
        None,
        client_id=client_id,
        code_challenge_method="S256" if spec.pkce else None,
    )
    extra: dict[str, str] = dict(spec.extra_authorization_params)
    if spec.response_mode:
        extra["response_mode"] = spec.response_mode
    if login_hint:
        extra["login_hint"] = login_hint
    scope = scope_string(provider, scopes)
    uri, _ = builder.create_authorization_url(
        url,
        state=state,
        code_verifier=code_verifier if spec.pkce else None,
        redirect_uri=redirect_uri,
        scope=scope or None,
        **extra,
    )
    if spec.pkce and "code_challenge=" not in uri:  # pragma: no cover - authlib guard (R5)
        raise RuntimeError("PKCE challenge missing from the authorization URL")
    if spec.client_id_param != "client_id":
        parts = urlsplit(uri)
        query = [
            (spec.client_id_param if k == "client_id" else k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        uri = urlunsplit(parts._replace(query=urlencode(query)))
    return uri


def code_challenge(code_verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding (RFC 7636 §4.2)."""
    return str(create_s256_code_challenge(code_verifier))


async def exchange_code(
    provider: Provider,
    *,
    code: str,
    code_verifier: str | None,
    redirect_uri: str,
    token_endpoint: str,
    credentials: AppCredentials,
    issuer: str,
    transport: httpx.AsyncBaseTransport | None = None,
    requested_scope: str | None = None,
    callback_params: Mapping[str, str] | None = None,
    timeout_seconds: float | None = None,
) -> TokenResult:
    """Exchange an authorization code at ``token_endpoint`` (from the flow row) (R11, R12).

    Raises :class:`OAuthProviderError` (allow-listed ``error_code``) on any failure; nothing
    is returned unless the response passed validation.
    """
    scope = requested_scope if requested_scope is not None else _default_scope(provider)
    async with _token_client(
        provider,
        credentials,
        transport=transport,
        redirect_uri=redirect_uri,
        timeout_seconds=timeout_seconds,
    ) as (client, capture):
        params: dict[str, str] = {"code": code}
        if provider.spec.pkce and code_verifier:
            params["code_verifier"] = code_verifier
        params.update(provider.spec.extra_token_params)
        body = await _call(
            provider,
            capture,
            client.fetch_token(
                token_endpoint,
                grant_type="authorization_code",
                headers=dict(TOKEN_HEADERS),
                **params,
            ),
        )
        validate_token_body(provider, capture.status, body)
        for hook in provider._hooks:
            if hook.after_exchange is not None:
                body = await hook.after_exchange(
                    _exchange_context(provider, client, token_endpoint), body
                )
                validate_token_body(provider, 200, body)
    return _token_result(
        provider,
        body,
        issuer=issuer,
        client_id=credentials.client_id,
        requested_scope=scope,
        callback_metadata=provider.callback_metadata(callback_params or {}),
    )


def _default_scope(provider: Provider) -> str:
    return scope_string(provider)


def _exchange_context(
    provider: Provider, client: AsyncOAuth2Client, token_endpoint: str
) -> ExchangeContext:
    async def post(params: dict[str, str]) -> dict[str, Any]:
        capture = _Capture()
        hook = _compliance_hook(provider, capture)
        client.compliance_hook["access_token_response"] = {hook}
        grant_type = params.pop("grant_type")
        body = await _call(
            provider,
            capture,
            client.fetch_token(
                token_endpoint, grant_type=grant_type, headers=dict(TOKEN_HEADERS), **params
            ),
        )
        if capture.status != 200:
            raise OAuthProviderError(
                "invalid_token_response", provider_key=provider.key, status=capture.status
            )
        return body

    return ExchangeContext(provider_key=provider.key, token_endpoint=token_endpoint, post=post)


async def refresh(
    provider: Provider,
    *,
    refresh_token: Secret,
    token_endpoint: str,
    credentials: AppCredentials,
    issuer: str,
    transport: httpx.AsyncBaseTransport | None = None,
    scope: str | None = None,
    timeout_seconds: float | None = None,
) -> TokenResult:
    """Refresh a grant this service still owns (never one handed to Fivetran: R19).

    ``scope`` is sent only when given explicitly or when the provider requires it on every
    refresh (``refresh_sends_scope``). ``TokenResult.rotated`` tells whether a new refresh
    token came back; ``refresh_token`` is the one to keep (new, or the old one).
    """
    async with _token_client(
        provider, credentials, transport=transport, timeout_seconds=timeout_seconds
    ) as (
        client,
        capture,
    ):
        params: dict[str, str] = dict(provider.spec.extra_token_params)
        if scope is None and provider.spec.refresh_sends_scope:
            scope = _default_scope(provider)
        if scope:
            params["scope"] = scope
        body = await _call(
            provider,
            capture,
            client.refresh_token(
                token_endpoint,
                refresh_token=refresh_token.reveal(),
                headers=dict(TOKEN_HEADERS),
                **params,
            ),
        )
    validate_token_body(provider, capture.status, body, refreshing=True)
    return _token_result(
        provider,
        body,
        issuer=issuer,
        client_id=credentials.client_id,
        requested_scope=scope or _default_scope(provider),
        previous_refresh_token=refresh_token,
        refreshing=True,
    )


async def revoke(
    provider: Provider,
    token: Secret,
    *,
    revocation_endpoint: str | None,
    credentials: AppCredentials,
    token_type_hint: str = "refresh_token",  # noqa: S107
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_seconds: float | None = None,
) -> bool:
    """RFC 7009 revocation with the provider's explicit revocation auth method.

    Returns False when the provider has no revocation endpoint; raises
    :class:`OAuthProviderError` when the endpoint refuses (R21).
    """
    if not revocation_endpoint:
        return False
    async with _token_client(
        provider, credentials, transport=transport, timeout_seconds=timeout_seconds
    ) as (
        client,
        _capture,
    ):
        try:
            resp = await client.revoke_token(
                revocation_endpoint,
                token=token.reveal(),
                token_type_hint=token_type_hint,
                headers=dict(TOKEN_HEADERS),
            )
        except httpx.HTTPError as exc:
            raise _error_from(provider, exc, _Capture()) from None
    if resp.status_code == 200:
        return True
    error = "provider_error"
    try:
        payload = resp.json()
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            error = payload["error"]
    except ValueError:
        pass
    raise OAuthProviderError(
        error,
        provider_key=provider.key,
        status=resp.status_code,
        message=f"{provider.key}: revocation answered HTTP {resp.status_code}",
    )
