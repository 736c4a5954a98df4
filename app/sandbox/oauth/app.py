"""HTTP surface of the sandbox OAuth 2.0 authorization server — a **simulation**.

For local use and tests only; mounted at ``/sandbox/oauth`` in sandbox mode (never in
production) or run standalone via :func:`create_sandbox_oauth_app`. Per provider:

* ``GET  /{provider}/authorize`` — validates the request (exact redirect URI, S256 PKCE),
  then shows a consent page (Approve / Deny, and "Sign in as" a sandbox account), or decides
  at once with ``login_hint=auto`` / ``auto:<account>`` / the ``sandbox_auto_approve``
  setting, and ``login_hint=deny`` (→ ``error=access_denied``). Every redirect carries
  ``iss``.
* ``POST /{provider}/authorize`` — the consent form's decision (and chosen account).
* ``GET|POST /{provider}/api/<path>`` — the provider's identity call (the real path, the
  real answer's shape; :mod:`app.sandbox.oauth.accounts`), for the access token's account.
* ``POST /{provider}/token`` — authorization code (single use; replay revokes the grant),
  refresh (rotation and reuse detection where the provider rotates), Facebook exchange.
* ``POST /{provider}/introspect`` (RFC 7662), ``POST /{provider}/revoke`` (RFC 7009),
  ``GET /{provider}/.well-known/oauth-authorization-server`` (RFC 8414 + RFC 9207 flag).

Test control (``/_control``): ``POST /_control/latency`` ``{"seconds"}`` delays every other
request (:mod:`app.sandbox.latency`); ``POST /_control/misbehave`` ``{provider_key, kind, count}``
makes the next token responses misbehave (kinds in ``store.MISBEHAVIOURS``: no RT, HTML 502,
200 + ``{"error": "invalid_grant"}``, narrowed scope, 307 redirect, string ``expires_in``,
no ``token_type``) or the next authorization redirects (``authorize_omit_iss``,
``authorize_wrong_iss``); ``provider_key="*"`` for any provider; ``identity_500`` /
``identity_without_id`` break the next identity call. ``POST /_control/account``
``{provider_key, account}`` chooses the sandbox account the following consents log in as
(``provider_key="*"`` for any provider).
``GET|POST /{provider}/api/<host>/<path>`` — simulated provider list endpoints (account
pickers after consent, :mod:`app.sandbox.oauth.account_lists`), misbehaving on ``list_502`` /
``list_malformed``; the same prefix serves the provider's identity call when the path is the
one its identity spec names.
``GET /_control/token-requests`` / ``GET /_control/identity-requests`` list token-endpoint
and identity-endpoint hits; ``POST /_control/reset`` clears all state.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from app.config import Settings, load_settings
from app.providers.registry import SANDBOX_PATH, Provider, ProviderRegistry
from app.providers.startup import build_registry
from app.sandbox.latency import LatencyMiddleware, SimulatedLatency, parse_body
from app.sandbox.oauth import account_lists, accounts, quirks
from app.sandbox.oauth.oauth1 import (
    Consumer,
    OAuth1Error,
    OAuth1Request,
    OAuth1Store,
    SandboxOAuth1Protector,
    SandboxOAuth1Server,
)
from app.sandbox.oauth.server import SandboxAuthorizationServer, SandboxRequest, SandboxResponse
from app.sandbox.oauth.store import (
    AUTHORIZE_MISBEHAVIOURS,
    CONSENT_TTL_SECONDS,
    IDENTITY_MISBEHAVIOURS,
    LIST_MISBEHAVIOURS,
    MISBEHAVIOURS,
    PendingConsent,
    SandboxClient,
    SandboxStore,
    SandboxUser,
)
from app.sandbox.saving import SaveBeforeAnswer, persistence_of

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
DEFAULT_USER = accounts.DEFAULT_ACCOUNT
AUTH_METHODS = {
    "client_secret_basic": "client_secret_basic",
    "client_secret_post": "client_secret_post",
    "raw_basic": "raw_basic",
    "json_body": "pbf_json_body",
}


class SandboxOAuth:
    """The sandbox authorization servers (one per sandboxed provider) and their shared store."""

    def __init__(self, settings: Settings, registry: Callable[[], ProviderRegistry]) -> None:
        self.settings = settings
        self._registry = registry
        self.store = SandboxStore()
        self._servers: dict[str, SandboxAuthorizationServer] = {}
        #: OAuth 1.0a (X / Twitter): :mod:`app.sandbox.oauth.oauth1`.
        self.oauth1_store = OAuth1Store()

    def oauth1(self, key: str) -> tuple[SandboxOAuth1Server, SandboxOAuth1Protector] | None:
        """The sandbox OAuth 1.0a server and resource protector of a sandboxed provider."""
        provider = self._registry().oauth1.find(key)
        if provider is None or not provider.sandboxed:
            return None
        consumer = Consumer(
            client_id=provider.credentials.client_id,
            client_secret=provider.credentials.client_secret.reveal(),
            callback=f"{self.settings.public_base_url}/oauth/callback/{key}",
        )
        return (
            SandboxOAuth1Server(consumer, self.oauth1_store),
            SandboxOAuth1Protector(consumer, self.oauth1_store),
        )

    def provider(self, key: str) -> Provider | None:
        provider = self._registry().find(key)
        return provider if provider is not None and provider.sandboxed else None

    def server(self, key: str) -> SandboxAuthorizationServer | None:
        if key in self._servers:
            return self._servers[key]
        provider = self.provider(key)
        if provider is None:
            return None
        app_config = self._registry().app_config(key)
        if app_config.client_secret is None:  # pragma: no cover - sandboxed apps are generated
            return None
        spec = provider.spec
        rotation = spec.refresh_token_rotation == "yes" or bool(spec.sandbox.get("rotate"))
        grant_types = list(spec.grant_types)
        client = SandboxClient(
            provider_key=key,
            client_id=app_config.client_id,
            client_secret=app_config.client_secret.reveal(),
            auth_method=AUTH_METHODS[spec.token_auth_method],
            redirect_uris=(f"{self.settings.public_base_url}/oauth/callback/{key}",),
            grant_types=tuple(grant_types),
            pkce_required=spec.pkce,
            rotate_refresh_tokens=rotation,
            issues_refresh_tokens="refresh_token" in grant_types and spec.requires_refresh_token,
            display_name=spec.display_name,
        )
        server = SandboxAuthorizationServer(
            provider_key=key,
            issuer=spec.issuer,
            client=client,
            store=self.store,
            offline_param=bool(spec.sandbox.get("refresh_token_needs_offline")),
            refresh_requires_scope=bool(spec.sandbox.get("refresh_requires_scope")),
            facebook_exchange="fb_exchange_token" in grant_types,
        )
        self._servers[key] = server
        return server


def _state(request: Request) -> SandboxOAuth:
    return request.app.state.sandbox_oauth  # type: ignore[no-any-return]


def _problem(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status, NO_STORE)


def _error_page(status: int, error: str, description: str) -> HTMLResponse:
    body = (
        "<!doctype html><html><head><title>Authorization error</title></head><body>"
        f"<h1>Authorization error</h1><p><code>{html.escape(error)}</code></p>"
        f"<p>{html.escape(description)}</p>"
        "<p>This is the pbf-headless sandbox authorization server (a simulation).</p>"
        "</body></html>"
    )
    return HTMLResponse(body, status, headers=NO_STORE)


def _to_http(
    oauth: SandboxOAuth,
    provider_key: str,
    response: SandboxResponse,
    *,
    request_params: dict[str, str],
    username: str | None,
) -> Response:
    location = response.location
    if location is not None:
        server = oauth.server(provider_key)
        assert server is not None
        kind = oauth.store.pop_misbehaviour(provider_key, stage="authorize")
        if kind is not None:
            location = quirks.misbehave_location(kind, location)
        provider = oauth.provider(provider_key)
        location = quirks.callback_location(
            provider_key,
            location,
            request_params=request_params,
            client_secret=server.client.client_secret,
            username=username or DEFAULT_USER,
            identity=provider.spec.identity if provider is not None else None,
        )
        return RedirectResponse(location, status_code=302, headers=NO_STORE)
    body = response.body if isinstance(response.body, dict) else {"error": "invalid_request"}
    return _error_page(
        response.status, str(body.get("error")), str(body.get("error_description") or "")
    )


class _Answered(Exception):
    """Raised by a route helper that has already produced the route's response."""

    def __init__(self, response: Response) -> None:
        super().__init__()
        self.response = response


async def _send_answer(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Answered)
    return exc.response


def _server(
    request: Request, provider_key: str, *, page: bool
) -> tuple[SandboxOAuth, SandboxAuthorizationServer]:
    """The sandbox state and the provider's authorization server. An unknown provider is a
    404: an HTML page on the browser routes (``page``), a JSON error on the others."""
    oauth = _state(request)
    server = oauth.server(provider_key)
    if server is None:
        raise _Answered(
            _error_page(404, "unknown_provider", "No sandbox provider with this key.")
            if page
            else _problem(404, "invalid_request", "unknown sandbox provider")
        )
    return oauth, server


def _consent_grant(
    oauth: SandboxOAuth, provider_key: str, server: SandboxAuthorizationServer, req: SandboxRequest
) -> Any:
    """The grant of a valid authorization request; an invalid one is answered as RFC 6749
    §4.1.2.1 says (an error redirect to a valid redirect URI, else an error page)."""
    try:
        return server.get_consent_grant(req)
    except OAuth2Error as error:
        raise _Answered(
            _to_http(
                oauth,
                provider_key,
                server.error_response(req, error),
                request_params=req.payload.data,
                username=None,
            )
        ) from None


def _default_account(oauth: SandboxOAuth, provider_key: str) -> str:
    """The account set through ``POST /_control/account`` (else ``sandbox-user``)."""
    chosen = oauth.store.default_accounts
    return chosen.get(provider_key) or chosen.get("*") or DEFAULT_USER


def _login_decision(
    oauth: SandboxOAuth, provider_key: str, params: dict[str, str]
) -> tuple[str, str | None]:
    """``("approve", account)``, ``("deny", None)`` or ``("ask", None)``."""
    hint = params.get("login_hint") or ""
    if hint == "deny":
        return "deny", None
    if hint == "auto" or hint.startswith("auto:"):
        return "approve", hint.partition(":")[2] or _default_account(oauth, provider_key)
    if oauth.settings.oauth.sandbox_auto_approve:
        return "approve", hint or _default_account(oauth, provider_key)
    return "ask", None


def _account_choice(selected: str) -> str:
    names = list(accounts.ACCOUNTS) + ([selected] if selected not in accounts.ACCOUNTS else [])
    options = "".join(
        f'<option value="{html.escape(n)}"{" selected" if n == selected else ""}>'
        f"{html.escape(n)}</option>"
        for n in names
    )
    return (
        '<p><label for="account">Sign in as (sandbox account)</label><br>'
        f'<select id="account" name="account">{options}</select></p>'
    )


def _consent_page(
    provider: Provider,
    client_id: str,
    consent_id: str,
    scope: str,
    action: str,
    account: str = DEFAULT_USER,
    *,
    field: str = "consent_id",
) -> HTMLResponse:
    scopes = [s for s in scope.replace(",", " ").split(" ") if s]
    items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in scopes) or (
        "<li>(permissions configured on the app)</li>"
    )
    name = html.escape(provider.display_name)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {name} (sandbox)</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;
line-height:1.5;overflow-wrap:anywhere}}
.actions{{display:flex;flex-wrap:wrap;gap:.75rem}}
.actions button{{min-height:44px;min-width:44px;flex:1 1 8rem;font:inherit;
padding:.6rem 1.2rem;border-radius:6px;border:1px solid #1d2433;cursor:pointer}}
.actions button[value=approve]{{background:#1d2433;color:#fff}}
.actions button[value=deny]{{background:#fff;color:#1d2433}}
</style></head>
<body>
<h1>{name} — sandbox consent</h1>
<p id="consent-what">The application <strong>{html.escape(provider.key)}</strong> (client
<code>{html.escape(client_id)}</code>) asks for access to your {name} data:</p>
<ul>{items}</ul>
<form method="post" action="{html.escape(action)}" aria-label="Consent decision">
  <input type="hidden" name="{field}" value="{html.escape(consent_id)}">
  {_account_choice(account)}
  <div class="actions">
  <button type="submit" name="decision" value="approve"
    aria-describedby="consent-what">Approve</button>
  <button type="submit" name="decision" value="deny"
    aria-describedby="consent-what">Deny</button>
  </div>
</form>
<p><small>pbf-headless sandbox authorization server: a simulation for local use and tests.
</small></p>
</body></html>"""
    return HTMLResponse(body, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})


def _complete(
    oauth: SandboxOAuth,
    provider_key: str,
    req: SandboxRequest,
    grant: Any,
    decision: str,
    username: str | None,
) -> Response:
    server = oauth.server(provider_key)
    assert server is not None
    user = SandboxUser(username or DEFAULT_USER) if decision == "approve" else None
    response = server.create_authorization_response(req, grant_user=user, grant=grant)
    return _to_http(
        oauth, provider_key, response, request_params=req.payload.data, username=username
    )


class MisbehaveBody(BaseModel):
    provider_key: str = Field(description="Provider key, or '*' for any provider.")
    kind: str = Field(
        description="One of: "
        + ", ".join(MISBEHAVIOURS + AUTHORIZE_MISBEHAVIOURS + IDENTITY_MISBEHAVIOURS)
    )
    count: int = Field(1, ge=1, le=100)
    delay_seconds: float = Field(
        30.0, gt=0, le=600, description="kind 'slow': how long the token answer takes."
    )


class AccountBody(BaseModel):
    provider_key: str = Field(description="Provider key, or '*' for any provider.")
    account: str = Field(description="Sandbox account name, e.g. 'second-account'.")


def _account_of(oauth: SandboxOAuth, access_token: str) -> str | None:
    """The sandbox account an access token was issued to."""
    issued = oauth.store.access_tokens.get(access_token)
    if issued is None:
        return None
    grant = oauth.store.grants.get(issued.grant_id)
    return grant.user.username if grant is not None else None


def _presented_token(auth: str, request: Request) -> str | None:
    """The access token as the provider takes it (bearer, or a named header)."""
    if auth == "bearer":
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        return value.strip() or None if scheme.lower() == "bearer" else None
    return request.headers.get(auth.split(":", 1)[1]) or None


def create_sandbox_oauth_app(
    settings: Settings | None = None,
    *,
    registry: ProviderRegistry | None = None,
) -> FastAPI:
    """Standalone ASGI app of the sandbox authorization server (a simulation).

    Serves ``/sandbox/oauth/{provider}/…`` — the URLs the provider registry advertises when
    ``public_base_url`` points at this server. Without ``registry`` it builds its own from
    ``settings`` (sandbox mode). Run it with
    ``uvicorn --factory app.sandbox.oauth:create_sandbox_oauth_app``.
    """
    settings = settings or load_settings()
    if registry is None:
        registry = build_registry(settings)
    fixed = registry
    sub = _build_app(settings, lambda: fixed)
    root = FastAPI(
        title="pbf-headless sandbox authorization server (simulation)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    root.mount(SANDBOX_PATH, sub)
    root.state.sandbox_oauth = sub.state.sandbox_oauth
    return root


#: The routes of the sandbox authorization server, built once per process: handlers find
#: their app's state through the request (``request.app.state.sandbox_oauth``).
router = APIRouter()


@router.get("/{provider_key}/authorize")
async def authorize(provider_key: str, request: Request) -> Response:
    oauth, server = _server(request, provider_key, page=True)
    oauth.store.prune()
    items = quirks.authorize_params(provider_key, list(request.query_params.multi_items()))
    req = SandboxRequest("GET", str(request.url), request.headers, items)
    params = req.payload.data
    if provider_key == "shopify" and not quirks.SHOP_DOMAIN.match(params.get("shop", "")):
        return _error_page(400, "invalid_request", "Missing or invalid shop.")
    grant = _consent_grant(oauth, provider_key, server, req)
    decision, username = _login_decision(oauth, provider_key, params)
    if decision != "ask":
        return _complete(oauth, provider_key, req, grant, decision, username)
    consent_id = secrets.token_urlsafe(24)
    oauth.store.consents[consent_id] = PendingConsent(consent_id, provider_key, items)
    provider = oauth.provider(provider_key)
    assert provider is not None
    return _consent_page(
        provider,
        server.client.client_id,
        consent_id,
        req.scope or "",
        str(request.url.path),
        _default_account(oauth, provider_key),
    )


@router.post("/{provider_key}/authorize")
async def consent(provider_key: str, request: Request) -> Response:
    oauth, server = _server(request, provider_key, page=True)
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    pending = oauth.store.consents.pop(form.get("consent_id", ""), None)
    if (
        pending is None
        or pending.provider_key != provider_key
        or pending.created_at + CONSENT_TTL_SECONDS < time.time()
    ):
        return _error_page(400, "invalid_request", "Unknown or expired consent.")
    req = SandboxRequest("GET", str(request.url), request.headers, pending.query)
    grant = _consent_grant(oauth, provider_key, server, req)
    decision = "approve" if form.get("decision") == "approve" else "deny"
    account = form.get("account") or ""
    if not accounts.ACCOUNT_NAME.match(account):
        account = req.payload.data.get("login_hint") or _default_account(oauth, provider_key)
    return _complete(oauth, provider_key, req, grant, decision, account)


@router.post("/{provider_key}/token")
async def token(provider_key: str, request: Request) -> Response:
    oauth, server = _server(request, provider_key, page=False)
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json"
    if is_json:
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            return _problem(400, "invalid_request", "malformed JSON body")
        if not isinstance(payload, dict):
            return _problem(400, "invalid_request", "malformed JSON body")
        items = quirks.token_params_from_json(provider_key, payload, oauth.store)
    else:
        items = parse_qsl(raw.decode(errors="replace"), keep_blank_values=True)
    grant_type = dict(items).get("grant_type", "")
    oauth.store.log_token_request(provider_key, grant_type)
    kind = oauth.store.pop_misbehaviour(provider_key)
    if kind == "slow":  # a correct answer, too late (beyond the client's timeout)
        await asyncio.sleep(oauth.store.slow_seconds)
    if kind == "html_502":
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
    if kind == "redirect_307":
        return Response(status_code=307, headers={"Location": "https://other.example/token"})
    if kind == "error_200":
        return JSONResponse({"error": "invalid_grant"}, 200, NO_STORE)
    req = SandboxRequest("POST", str(request.url), request.headers, items, is_json=is_json)
    response = server.create_token_response(req)
    body = response.body if isinstance(response.body, dict) else {}
    if response.status == 200:
        provider = oauth.provider(provider_key)
        separator = provider.spec.scope_separator if provider else " "
        if kind is not None:
            body = quirks.misbehave(kind, body, separator)
        account = _account_of(oauth, str(body.get("access_token", "")))
        identity = provider.spec.identity if provider is not None else None
        if (
            account is not None
            and identity is not None
            and identity.source == "id_token"
            and grant_type == "authorization_code"
            and "openid" in str(body.get("scope", "")).replace(",", " ").split(" ")
        ):
            body["id_token"] = accounts.id_token(
                provider_key,
                account,
                identity,
                issuer=server.issuer,
                client_id=server.client.client_id,
                client_secret=server.client.client_secret,
            )
        body = quirks.decorate_token(
            provider_key, body, grant_type=grant_type, account=account, identity=identity
        )
    return JSONResponse(body, response.status, {**dict(response.headers), **NO_STORE})


async def _endpoint(provider_key: str, request: Request, name: str) -> Response:
    _, server = _server(request, provider_key, page=False)
    items = parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True)
    req = SandboxRequest("POST", str(request.url), request.headers, items)
    response = server.create_endpoint_response(name, req)
    return JSONResponse(response.body, response.status, {**dict(response.headers), **NO_STORE})


@router.post("/{provider_key}/introspect")
async def introspect(provider_key: str, request: Request) -> Response:
    return await _endpoint(provider_key, request, "introspection")


@router.post("/{provider_key}/revoke")
async def revoke(provider_key: str, request: Request) -> Response:
    return await _endpoint(provider_key, request, "revocation")


@router.get("/{provider_key}/.well-known/oauth-authorization-server")
async def metadata(provider_key: str, request: Request) -> Response:
    _, server = _server(request, provider_key, page=False)
    return JSONResponse(server.metadata(server.issuer))


@router.api_route("/{provider_key}/api/{path:path}", methods=["GET", "POST"])
async def provider_api(provider_key: str, path: str, request: Request) -> Response:
    """Simulated provider API: the identity call named by the provider's identity spec,
    otherwise the account-picker list endpoints (:mod:`.account_lists`)."""
    oauth, _ = _server(request, provider_key, page=False)
    provider = oauth.provider(provider_key)
    spec = provider.spec.identity if provider is not None else None
    if spec is not None and spec.source == "endpoint":
        expected = urlsplit(spec.url or "").path.removeprefix(f"{SANDBOX_PATH}/{provider_key}/api/")
        if path == expected:
            return await identity_endpoint(provider_key, path, request)
    return await provider_list(provider_key, path, request)


async def provider_list(provider_key: str, path: str, request: Request) -> Response:
    """Simulated provider list endpoints (account pickers; :mod:`.account_lists`)."""
    oauth, server = _server(request, provider_key, page=False)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        return _problem(400, "invalid_request", "malformed JSON body")
    return account_lists.list_response(
        oauth.store,
        provider_key,
        path,
        request,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        body=body,
    )


async def identity_endpoint(provider_key: str, path: str, request: Request) -> Response:
    """The provider's identity call (e.g. HubSpot account info, Intercom ``/me``)."""
    oauth, server = _server(request, provider_key, page=False)
    provider = oauth.provider(provider_key)
    assert provider is not None
    spec = provider.spec.identity
    expected = urlsplit(spec.url or "").path.removeprefix(f"{SANDBOX_PATH}/{provider_key}/api/")
    if spec.source != "endpoint" or path != expected:
        return _problem(404, "invalid_request", "not an identity endpoint of this provider")
    token = _presented_token(spec.auth, request)
    if token is None:
        return _problem(401, "invalid_token", "no access token presented")
    oauth.store.identity_requests.append((provider_key, "/" + path))
    issued = oauth.store.access_tokens.get(token)
    if (
        issued is None
        or issued.is_revoked()
        or issued.is_expired()
        or not oauth.store.grant_active(issued.grant_id)
    ):
        return _problem(401, "invalid_token", "unknown, expired or revoked access token")
    kind = oauth.store.pop_misbehaviour(provider_key, stage="identity")
    if kind == "identity_500":
        return JSONResponse({"status": "error", "message": "internal error"}, 500)
    account = oauth.store.grants[issued.grant_id].user.username
    body = accounts.endpoint_body(
        provider_key,
        account,
        spec,
        access_token=token,
        scope=issued.scope,
        client_id=server.client.client_id,
        expires_in=max(0, int(issued.issued_at + issued.expires_in - time.time())),
    )
    if kind == "identity_without_id":
        body = {"note": "answer without the account id"}
    return JSONResponse(body, headers=NO_STORE)


@router.post("/_control/account")
async def control_account(body: AccountBody, request: Request) -> Response:
    """Which sandbox account the following consents log in as (per provider or '*')."""
    if not accounts.ACCOUNT_NAME.match(body.account):
        return _problem(422, "invalid_request", "account must match [a-z0-9][a-z0-9-]*")
    _state(request).store.default_accounts[body.provider_key] = body.account
    return JSONResponse({"provider_key": body.provider_key, "account": body.account})


@router.get("/_control/identity-requests")
async def control_identity_requests(request: Request) -> Response:
    log = _state(request).store.identity_requests
    return JSONResponse({"items": [{"provider_key": k, "path": p} for k, p in log]})


# --- OAuth 1.0a (X / Twitter), see app.sandbox.oauth.oauth1 -----------------------------


def _oauth1(request: Request, key: str) -> tuple[SandboxOAuth1Server, SandboxOAuth1Protector]:
    found = _state(request).oauth1(key)
    if found is None:
        raise _Answered(_error_page(404, "unknown_provider", "No sandbox provider with this key."))
    _state(request).oauth1_store.prune()
    return found


def _form_answer(answer: tuple[int, str, Any]) -> Response:
    status, body, headers = answer
    out = Response(body, status, media_type="application/x-www-form-urlencoded")
    for name, value in headers or []:
        if name.lower() != "content-type":
            out.headers[name] = value
    out.headers.update(NO_STORE)
    return out


async def _signed(request: Request) -> OAuth1Request:
    body = (await request.body()).decode(errors="replace")
    return OAuth1Request(request.method, str(request.url), body, request.headers)


@router.post("/oauth1/{provider_key}/request_token")
async def oauth1_request_token(provider_key: str, request: Request) -> Response:
    server, _ = _oauth1(request, provider_key)
    try:
        req = await _signed(request)
    except OAuth1Error as error:
        return _form_answer(server.handle_error_response(error))
    return _form_answer(server.create_temporary_credentials_response(req))


@router.get("/oauth1/{provider_key}/authorize")
async def oauth1_authorize(provider_key: str, request: Request) -> Response:
    server, _ = _oauth1(request, provider_key)
    request_token = request.query_params.get("oauth_token", "")
    if server.pending(request_token) is None:
        return _error_page(400, "invalid_token", "Unknown, used or expired request token.")
    oauth = _state(request)
    if oauth.settings.oauth.sandbox_auto_approve:
        return RedirectResponse(server.approve(request_token, DEFAULT_USER), 302, NO_STORE)
    provider = oauth._registry().oauth1.get(provider_key)
    return _consent_page(
        provider,  # type: ignore[arg-type]
        server.consumer.client_id,
        request_token,
        "",
        str(request.url.path),
        field="oauth_token",
    )


@router.post("/oauth1/{provider_key}/authorize")
async def oauth1_consent(provider_key: str, request: Request) -> Response:
    server, _ = _oauth1(request, provider_key)
    form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
    request_token = form.get("oauth_token", "")
    if server.pending(request_token) is None:
        return _error_page(400, "invalid_token", "Unknown, used or expired request token.")
    if form.get("decision") == "approve":
        account = form.get("account") or DEFAULT_USER
        if not accounts.ACCOUNT_NAME.match(account):
            return _error_page(400, "invalid_request", "Unknown sandbox account.")
        return RedirectResponse(server.approve(request_token, account), 302, NO_STORE)
    return RedirectResponse(server.deny(request_token), 302, NO_STORE)


@router.post("/oauth1/{provider_key}/access_token")
async def oauth1_access_token(provider_key: str, request: Request) -> Response:
    server, _ = _oauth1(request, provider_key)
    _state(request).store.log_token_request(provider_key, "oauth1_access_token")
    try:
        req = await _signed(request)
    except OAuth1Error as error:
        return _form_answer(server.handle_error_response(error))
    return _form_answer(server.create_token_response(req))


@router.get("/oauth1/{provider_key}/verify_credentials")
async def oauth1_verify(provider_key: str, request: Request) -> Response:
    _, protector = _oauth1(request, provider_key)
    body = (await request.body()).decode(errors="replace")
    try:
        credential = protector.check(request.method, str(request.url), body, request.headers)
    except OAuth1Error:
        credential = None
    if credential is None:
        return JSONResponse({"errors": [{"code": 89, "message": "Invalid or expired token."}]}, 401)
    return JSONResponse({"id_str": credential.user_id, "screen_name": credential.user_id})


# --- client credentials check (simulated Microsoft Entra token endpoint) ----------------


@router.post("/client-credentials/{service}/{tenant}/token")
async def client_credentials_token(service: str, tenant: str, request: Request) -> Response:
    """Simulated client credentials grant: refuses the secret ``wrong``/``invalid`` and the
    client id ``invalid`` (401 invalid_client) and the tenant ``invalid`` (400
    invalid_request); otherwise issues a throw-away token."""
    form = dict(parse_qsl((await request.body()).decode(errors="replace")))
    _state(request).store.log_token_request(f"cc:{service}", form.get("grant_type", ""))
    if form.get("grant_type") != "client_credentials":
        return _problem(400, "unsupported_grant_type", "client_credentials only")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        return _problem(401, "invalid_client", "client authentication failed")
    if tenant == "invalid":
        return _problem(400, "invalid_request", "AADSTS90002: tenant not found")
    if secret in ("wrong", "invalid") or client_id == "invalid":
        return _problem(401, "invalid_client", "AADSTS7000215: invalid client secret")
    token = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer"}
    return JSONResponse({**token, "expires_in": 3599}, 200, NO_STORE)


@router.post("/_control/misbehave")
async def control_misbehave(body: MisbehaveBody, request: Request) -> Response:
    kinds = MISBEHAVIOURS + AUTHORIZE_MISBEHAVIOURS + LIST_MISBEHAVIOURS + IDENTITY_MISBEHAVIOURS
    if body.kind not in kinds:
        return _problem(422, "invalid_request", f"kind must be one of {list(kinds)}")
    if body.kind == "slow":
        _state(request).store.slow_seconds = body.delay_seconds
    _state(request).store.queue_misbehaviour(body.provider_key, body.kind, body.count)
    return JSONResponse({"queued": body.count, "kind": body.kind})


@router.get("/_control/token-requests")
async def control_token_requests(request: Request) -> Response:
    log = _state(request).store.token_requests
    return JSONResponse(
        {"items": [{"provider_key": r.provider_key, "grant_type": r.grant_type} for r in log]}
    )


@router.post("/_control/latency")
async def control_latency(request: Request) -> Response:
    try:
        seconds = request.app.state.sandbox_latency.set(parse_body(await request.body()))
    except ValueError as exc:
        return _problem(422, "invalid_request", str(exc))
    return JSONResponse({"seconds": seconds})


@router.post("/_control/reset")
async def control_reset(request: Request) -> Response:
    _state(request).store.reset()
    _state(request).oauth1_store.reset()
    return JSONResponse({"reset": True})


def _build_app(settings: Settings, get_registry: Callable[[], ProviderRegistry]) -> FastAPI:
    """The server of one app, relative to the mount point (``/sandbox/oauth``): its own state
    and simulated latency over the shared :data:`router`."""
    app = FastAPI(
        title="pbf-headless sandbox authorization server (simulation)",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.sandbox_oauth = SandboxOAuth(settings, get_registry)
    app.add_exception_handler(_Answered, _send_answer)
    latency = SimulatedLatency()
    app.state.sandbox_latency = latency
    app.add_middleware(LatencyMiddleware, latency=latency)  # type: ignore[arg-type]
    app.include_router(router)
    return app


def mount_sandbox_oauth(app: FastAPI) -> None:
    """Mount the sandbox authorization server at ``/sandbox/oauth`` on the main app.

    Reads the main app's provider registry (``app.state.providers``) at request time.
    """
    sub = _build_app(app.state.settings, lambda: app.state.providers)
    app.mount(SANDBOX_PATH, SaveBeforeAnswer(sub, persistence_of(app)))
    app.state.sandbox_oauth = sub.state.sandbox_oauth
