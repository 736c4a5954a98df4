"""Authlib authorization-server components wired for the sandbox (a simulation).

One :class:`SandboxAuthorizationServer` per provider (its own issuer,
``{public_base_url}/sandbox/oauth/{provider_key}``), all sharing one
:class:`~app.sandbox.oauth.store.SandboxStore`. Built from authlib's RFC 6749 server,
grants and endpoints: authorization code grant with :class:`StrictCodeChallenge` (S256 only),
refresh token grant with optional rotation and reuse detection, RFC 7662 introspection,
RFC 7009 revocation and RFC 9207 ``iss`` on every authorization response. The Starlette
side (``app.py``) adapts requests with :class:`SandboxRequest` (an ``OAuth2Request``).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    BaseGrant,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    TokenEndpointMixin,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749 import grants as rfc6749_grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter

from app.sandbox.oauth.store import (
    ACCESS_TOKEN_TTL_SECONDS,
    AuthorizationCode,
    IssuedToken,
    RefreshRecord,
    SandboxClient,
    SandboxStore,
    SandboxUser,
)

FB_LONG_LIVED_SECONDS = 60 * 24 * 3600


# --- request / response adapters -------------------------------------------------------------


class SandboxPayload(OAuth2Payload):
    """Parameters of one request (query for /authorize, form or mapped JSON for /token)."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)
        self._data = {k: v[0] for k, v in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class SandboxRequest(OAuth2Request):
    """Authlib request built from a Starlette request's method, URL, headers and params."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        items: Iterable[tuple[str, str]],
        *,
        is_json: bool = False,
    ) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = SandboxPayload(items)
        self.is_json = is_json

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


@dataclass
class SandboxResponse:
    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        for key, value in self.headers:
            if key.lower() == "location":
                return value
        return None

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"]
        self.headers.append(("Location", value))


# --- client authentication ---------------------------------------------------------------


def authenticate_raw_basic(query_client: Any, request: SandboxRequest) -> Any:
    """Basic auth without RFC 6749 §2.3.1 decoding (for ``raw_basic`` providers)."""
    header = request.headers.get("Authorization") or ""
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header.split(None, 1)[1]).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    client = query_client(client_id)
    if client and client.check_client_secret(secret):
        return client
    return None


def authenticate_json_body(query_client: Any, request: SandboxRequest) -> Any:
    """Credentials in a JSON body (TikTok ``app_id``/``secret``), already mapped to the form."""
    if not request.is_json:
        return None
    client = query_client(request.form.get("client_id"))
    secret = request.form.get("client_secret")
    if client and secret and client.check_client_secret(secret):
        return client
    return None


# --- grants --------------------------------------------------------------------------------


class StrictCodeChallenge(CodeChallenge):
    """RFC 7636 with S256 only: ``plain`` (explicit or defaulted) is rejected (RFC 9700)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        method = data.get("code_challenge_method")
        client: SandboxClient = grant.request.client
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        if client.pkce_required and not challenge:
            raise InvalidRequestError("PKCE (code_challenge, S256) is required")
        super().validate_code_challenge(grant, redirect_uri)


class SandboxCodeGrant(rfc6749_grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = [
        "client_secret_basic",
        "client_secret_post",
        "raw_basic",
        "pbf_json_body",
    ]

    @property
    def store(self) -> SandboxStore:
        return self.server.store  # type: ignore[no-any-return]

    def save_authorization_code(self, code: str, request: SandboxRequest) -> None:
        data = request.payload.data
        self.store.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope or "",
            user=request.user,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            offline=self.server.offline_requested(data),
        )

    def query_authorization_code(self, code: str, client: SandboxClient) -> Any:
        item = self.store.codes.get(code)
        if item is None or item.client_id != client.client_id:
            return None
        if item.used:
            # Replay: deny and revoke every token issued from this code (RFC 6749 §4.1.2).
            self.store.revoke_grant(item.grant_id)
            return None
        if item.is_expired():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        authorization_code.used = True  # kept, marked: a replay must be detectable

    def authenticate_user(self, authorization_code: AuthorizationCode) -> SandboxUser:
        return authorization_code.user

    def generate_token(
        self,
        user: Any = None,
        scope: Any = None,
        grant_type: Any = None,
        expires_in: Any = None,
        include_refresh_token: bool = True,
    ) -> Any:
        code: AuthorizationCode = self.request.authorization_code
        client: SandboxClient = self.request.client
        include = include_refresh_token and client.issues_refresh_tokens and code.offline
        return super().generate_token(
            user=user,
            scope=scope,
            grant_type=grant_type,
            expires_in=expires_in,
            include_refresh_token=include,
        )


class SandboxRefreshGrant(rfc6749_grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = SandboxCodeGrant.TOKEN_ENDPOINT_AUTH_METHODS

    @property
    def store(self) -> SandboxStore:
        return self.server.store  # type: ignore[no-any-return]

    def validate_token_request(self) -> None:
        if self.server.refresh_requires_scope and not self.request.payload.scope:
            raise InvalidRequestError("scope is required on refresh for this provider")
        super().validate_token_request()

    def authenticate_refresh_token(self, refresh_token: str) -> Any:
        record = self.store.refresh_tokens.get(refresh_token)
        if record is None:
            return None
        if record.state == "rotated":
            # Reuse of a rotated refresh token: revoke the whole grant (RFC 9700 §4.14.2).
            self.store.revoke_grant(record.grant_id)
            return None
        if record.state != "active" or not self.store.grant_active(record.grant_id):
            return None
        return record

    def authenticate_user(self, refresh_token: RefreshRecord) -> SandboxUser:
        return self.store.grants[refresh_token.grant_id].user

    def issue_token(self, user: Any, refresh_token: RefreshRecord) -> Any:
        client: SandboxClient = self.request.client
        scope = self.request.payload.scope or refresh_token.get_scope()
        return self.generate_token(
            user=user, scope=scope, include_refresh_token=client.rotate_refresh_tokens
        )

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        client: SandboxClient = self.request.client
        if client.rotate_refresh_tokens:
            refresh_token.state = "rotated"


class FacebookExchangeGrant(BaseGrant, TokenEndpointMixin):
    """``grant_type=fb_exchange_token``: short-lived user token → ~60-day token, no RT."""

    GRANT_TYPE = "fb_exchange_token"
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError()
        short = self.request.form.get("fb_exchange_token")
        if not short:
            raise InvalidRequestError("Missing 'fb_exchange_token'")
        store: SandboxStore = self.server.store
        token = store.access_tokens.get(short)
        if (
            token is None
            or token.client_id != client.client_id
            or token.is_revoked()
            or token.is_expired()
            or not store.grant_active(token.grant_id)
        ):
            raise InvalidGrantError()
        self.request.client = client
        self.request.credential = token

    def create_token_response(self) -> Any:
        source: IssuedToken = self.request.credential
        token = self.generate_token(
            scope=source.scope, expires_in=FB_LONG_LIVED_SECONDS, include_refresh_token=False
        )
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


# --- endpoints ------------------------------------------------------------------------------


def _find_token(store: SandboxStore, value: str, hint: str | None) -> Any:
    if hint != "refresh_token" and value in store.access_tokens:
        return store.access_tokens[value]
    if value in store.refresh_tokens:
        return store.refresh_tokens[value]
    return store.access_tokens.get(value)


class SandboxIntrospection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _find_token(self.server.store, token_string, token_type_hint)

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        return bool(token.client_id == client.client_id)

    def create_introspection_payload(self, token: Any) -> dict[str, Any]:
        store: SandboxStore = self.server.store
        if token is not None and not store.grant_active(token.grant_id):
            return {"active": False}
        return dict(super().create_introspection_payload(token))

    def introspect_token(self, token: Any) -> dict[str, Any]:
        store: SandboxStore = self.server.store
        grant = store.grants[token.grant_id]
        is_refresh = isinstance(token, RefreshRecord)
        payload: dict[str, Any] = {
            "active": True,
            "client_id": token.client_id,
            "scope": token.get_scope(),
            "token_type": "refresh_token" if is_refresh else "Bearer",
            "sub": grant.user.username,
            "iss": self.server.issuer,
            "iat": int(token.issued_at),
        }
        if not is_refresh:
            payload["exp"] = int(token.issued_at + token.expires_in)
        return payload


class SandboxRevocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
        return _find_token(self.server.store, token_string, token_type_hint)

    def revoke_token(self, token: Any, request: Any) -> None:
        store: SandboxStore = self.server.store
        if isinstance(token, RefreshRecord):
            # Revoking a refresh token ends the grant (RFC 7009 §2.1 "SHOULD").
            store.revoke_grant(token.grant_id)
        else:
            token.access_revoked = True


class SandboxIssuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


# --- the server ------------------------------------------------------------------------------


class SandboxAuthorizationServer(AuthorizationServer):
    """Authlib ``AuthorizationServer`` for one sandbox provider."""

    def __init__(
        self,
        *,
        provider_key: str,
        issuer: str,
        client: SandboxClient,
        store: SandboxStore,
        offline_param: bool = False,
        refresh_requires_scope: bool = False,
        facebook_exchange: bool = False,
    ) -> None:
        super().__init__()
        self.provider_key = provider_key
        self.issuer = issuer
        self.client = client
        self.store = store
        self.offline_param = offline_param
        self.refresh_requires_scope = refresh_requires_scope
        self.issuer_extension = SandboxIssuer(issuer)
        self.register_token_generator("default", self._generate_token)
        self.register_grant(SandboxCodeGrant, [StrictCodeChallenge(required=True)])
        self.register_grant(SandboxRefreshGrant)
        if facebook_exchange:
            self.register_grant(FacebookExchangeGrant)
        self.register_endpoint(SandboxIntrospection)
        self.register_endpoint(SandboxRevocation)
        self.register_client_auth_method("raw_basic", authenticate_raw_basic)
        self.register_client_auth_method("pbf_json_body", authenticate_json_body)
        self.register_extension(lambda server: self.issuer_extension(server))

    # authlib hooks ---------------------------------------------------------------------------

    def query_client(self, client_id: str | None) -> SandboxClient | None:
        if client_id and secrets.compare_digest(client_id.encode(), self.client.client_id.encode()):
            return self.client
        return None

    def offline_requested(self, data: dict[str, str]) -> bool:
        """Google-style: a refresh token only with ``access_type=offline``."""
        return not self.offline_param or data.get("access_type") == "offline"

    def _generate_token(
        self,
        grant_type: str,
        client: SandboxClient,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": "sbx-at-" + secrets.token_urlsafe(24),
            "expires_in": expires_in or ACCESS_TOKEN_TTL_SECONDS,
        }
        if scope:
            token["scope"] = scope
        if include_refresh_token:
            token["refresh_token"] = "sbx-rt-" + secrets.token_urlsafe(32)
        return token

    def save_token(self, token: dict[str, Any], request: SandboxRequest) -> None:
        store = self.store
        if request.authorization_code is not None:
            code: AuthorizationCode = request.authorization_code
            grant = store.new_grant(code.client_id, code.user, code.scope)
            code.grant_id = grant.grant_id
            grant_id = grant.grant_id
        elif request.refresh_token is not None:
            grant_id = request.refresh_token.grant_id
        else:  # facebook exchange
            grant_id = request.credential.grant_id
        refresh = token.get("refresh_token")
        if refresh is None and request.refresh_token is not None:
            refresh = request.refresh_token.token  # not rotated: the same RT stays valid
        store.access_tokens[token["access_token"]] = IssuedToken(
            access_token=token["access_token"],
            refresh_token=refresh,
            client_id=request.client.client_id,
            grant_id=grant_id,
            scope=token.get("scope", ""),
            expires_in=int(token["expires_in"]),
        )
        if "refresh_token" in token:
            store.refresh_tokens[token["refresh_token"]] = RefreshRecord(
                token=token["refresh_token"],
                client_id=request.client.client_id,
                grant_id=grant_id,
                scope=token.get("scope", ""),
            )

    def handle_response(self, status: int, body: Any, headers: Any) -> SandboxResponse:
        return SandboxResponse(status, body, list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: Any) -> SandboxRequest:
        if isinstance(request, SandboxRequest):
            return request
        raise TypeError("the sandbox builds SandboxRequest objects itself")

    def error_response(self, request: SandboxRequest, error: Any) -> SandboxResponse:
        """Error answer; authorization redirects carry ``iss`` too (RFC 9207 §2)."""
        response: SandboxResponse = self.handle_error_response(request, error)
        if response.location:
            self.issuer_extension.add_issuer_parameter(self, response)
        return response

    def metadata(self, base: str) -> dict[str, Any]:
        grant_types = ["authorization_code", "refresh_token"]
        if "fb_exchange_token" in self.client.grant_types:
            grant_types.append("fb_exchange_token")
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": grant_types,
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [self.client.auth_method],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "authorization_response_iss_parameter_supported": True,
        }


JSON_HEADERS = dict(default_json_headers)
