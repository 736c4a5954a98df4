"""Sandbox OAuth 1.0a (RFC 5849) server for X / Twitter — a **simulation** for local use and
tests, never mounted in production.

Built on authlib's OAuth 1 server components (``AuthorizationServer``, ``ResourceProtector``):
every request's HMAC-SHA1 signature, timestamp and nonce are verified against the provider's
sandbox consumer (``sandbox-<key>``, a secret with ``+``, ``%`` and ``:``). Per provider,
under ``/sandbox/oauth/oauth1/<key>``:

* ``POST /request_token`` — temporary credentials; ``oauth_callback`` must be exactly our
  callback URL (``<public_base_url>/oauth/callback/<key>``), answered with
  ``oauth_callback_confirmed=true``;
* ``GET /authorize?oauth_token=`` — a consent page (Approve / Deny), or an immediate approval
  with ``PBF_OAUTH__SANDBOX_AUTO_APPROVE``; ``POST /authorize`` takes the decision. Approval
  redirects to the callback with ``oauth_token`` + ``oauth_verifier``; a denial with
  ``denied=<request token>`` (as X does);
* ``POST /access_token`` — token credentials for a verified request token; the request token
  is single use (deleted on success and on any failure, so a verifier cannot be replayed);
* ``GET /verify_credentials`` — a protected resource (X's ``account/verify_credentials``):
  200 for a valid signed request with live token credentials. The Fivetran simulator's setup
  test checks handed-over OAuth 1.0a credentials here.

State is in memory (not part of ``sandbox-state.json``): a restart forgets OAuth 1.0a tokens.
Each access-token request is logged in the shared token-request log (grant type
``oauth1_access_token``; ``GET /sandbox/oauth/_control/token-requests``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.common.urls import add_params_to_uri, url_encode
from authlib.oauth1 import AuthorizationServer, ResourceProtector
from authlib.oauth1.rfc5849 import OAuth1Request
from authlib.oauth1.rfc5849.errors import InvalidRequestError, OAuth1Error
from authlib.oauth1.rfc5849.models import ClientMixin, TemporaryCredentialMixin

REQUEST_TOKEN_TTL_SECONDS = 600


@dataclass
class Consumer(ClientMixin):
    client_id: str
    client_secret: str = field(repr=False)
    callback: str

    def get_default_redirect_uri(self) -> str:
        return self.callback

    def get_client_secret(self) -> str:
        return self.client_secret

    def get_rsa_public_key(self) -> None:
        return None


@dataclass
class TemporaryCredential(TemporaryCredentialMixin):
    client_id: str
    oauth_token: str
    oauth_token_secret: str = field(repr=False)
    redirect_uri: str
    created_at: float = field(default_factory=time.time)
    verifier: str | None = field(default=None, repr=False)
    user_id: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def check_verifier(self, verifier: str) -> bool:
        return self.verifier is not None and secrets.compare_digest(
            verifier.encode(), self.verifier.encode()
        )

    def get_oauth_token(self) -> str:
        return self.oauth_token

    def get_oauth_token_secret(self) -> str:
        return self.oauth_token_secret


@dataclass
class TokenCredential:
    client_id: str
    oauth_token: str
    oauth_token_secret: str = field(repr=False)
    user_id: str

    def get_oauth_token(self) -> str:
        return self.oauth_token

    def get_oauth_token_secret(self) -> str:
        return self.oauth_token_secret


@dataclass
class OAuth1Store:
    """Temporary and token credentials and seen nonces of every sandbox OAuth 1.0a provider."""

    temporary: dict[str, TemporaryCredential] = field(default_factory=dict)
    tokens: dict[str, TokenCredential] = field(default_factory=dict)
    nonces: set[tuple[str, str, str, str]] = field(default_factory=set)

    def reset(self) -> None:
        self.temporary.clear()
        self.tokens.clear()
        self.nonces.clear()

    def prune(self) -> None:
        cutoff = time.time() - REQUEST_TOKEN_TTL_SECONDS
        for key in [k for k, t in self.temporary.items() if t.created_at < cutoff]:
            del self.temporary[key]


class _Nonces:
    store: OAuth1Store

    def exists_nonce(self, nonce: str, request: OAuth1Request) -> bool:
        key = (request.client_id or "", request.token or "", str(request.timestamp), nonce)
        if key in self.store.nonces:
            return True
        self.store.nonces.add(key)
        return False


class SandboxOAuth1Server(_Nonces, AuthorizationServer):  # type: ignore[misc]
    """authlib's RFC 5849 authorization server over :class:`OAuth1Store`, for one consumer."""

    def __init__(self, consumer: Consumer, store: OAuth1Store) -> None:
        self.consumer = consumer
        self.store = store

    def get_client_by_id(self, client_id: str) -> Consumer | None:
        return self.consumer if client_id == self.consumer.client_id else None

    def create_oauth1_request(self, request: OAuth1Request) -> OAuth1Request:
        return request

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> tuple[int, str, Any]:
        if isinstance(payload, list):  # RFC 5849 §2.1: oauth_callback_confirmed=true
            payload = [(k, str(v).lower() if isinstance(v, bool) else v) for k, v in payload]
            body = url_encode(payload)
        else:
            body = str(payload or "")
        return status_code, body, headers

    def validate_temporary_credentials_request(self, request: OAuth1Request) -> OAuth1Request:
        request = super().validate_temporary_credentials_request(request)
        # Exact callback (as an OAuth 2.0 redirect URI): the registered one only.
        if request.redirect_uri != self.consumer.callback:
            raise InvalidRequestError('Invalid "oauth_callback" value')
        return request

    def create_temporary_credential(self, request: OAuth1Request) -> TemporaryCredential:
        credential = TemporaryCredential(
            client_id=request.client_id,
            oauth_token=secrets.token_urlsafe(24),
            oauth_token_secret=secrets.token_urlsafe(32),
            redirect_uri=request.redirect_uri,
        )
        self.store.temporary[credential.oauth_token] = credential
        return credential

    def get_temporary_credential(self, request: OAuth1Request) -> TemporaryCredential | None:
        credential = self.store.temporary.get(request.token or "")
        if credential is None or credential.client_id != self.consumer.client_id:
            return None
        if credential.created_at + REQUEST_TOKEN_TTL_SECONDS < time.time():
            return None
        return credential

    def delete_temporary_credential(self, request: OAuth1Request) -> None:
        self.store.temporary.pop(request.token or "", None)

    def create_authorization_verifier(self, request: OAuth1Request) -> str:
        verifier = secrets.token_urlsafe(24)
        credential = request.credential
        credential.verifier = verifier
        credential.user_id = str(request.user)
        return verifier

    def create_token_credential(self, request: OAuth1Request) -> TokenCredential:
        temporary = request.credential
        credential = TokenCredential(
            client_id=temporary.client_id,
            oauth_token=f"{secrets.randbelow(10**12)}-{secrets.token_urlsafe(24)}",
            oauth_token_secret=secrets.token_urlsafe(32),
            user_id=temporary.user_id or "sandbox-user",
        )
        self.store.tokens[credential.oauth_token] = credential
        return credential

    # --- helpers for the routes -------------------------------------------------------------

    def pending(self, request_token: str) -> TemporaryCredential | None:
        """A live, not yet authorized request token of this consumer."""
        credential = self.store.temporary.get(request_token)
        if (
            credential is None
            or credential.client_id != self.consumer.client_id
            or credential.verifier is not None
            or credential.created_at + REQUEST_TOKEN_TTL_SECONDS < time.time()
        ):
            return None
        return credential

    def approve(self, request_token: str, user: str) -> str:
        """The callback URL of an approval (``oauth_token`` + ``oauth_verifier``)."""
        credential = self.store.temporary[request_token]
        verifier = secrets.token_urlsafe(24)
        credential.verifier = verifier
        credential.user_id = user
        return add_params_to_uri(
            credential.redirect_uri,
            [("oauth_token", request_token), ("oauth_verifier", verifier)],
        )

    def deny(self, request_token: str) -> str:
        """The callback URL of a denial (X: ``denied=<request token>``); the token dies."""
        credential = self.store.temporary.pop(request_token)
        return add_params_to_uri(credential.redirect_uri, [("denied", request_token)])


class SandboxOAuth1Protector(_Nonces, ResourceProtector):  # type: ignore[misc]
    """Protected resources of one consumer: valid signature + live token credentials."""

    def __init__(self, consumer: Consumer, store: OAuth1Store) -> None:
        self.consumer = consumer
        self.store = store

    def get_client_by_id(self, client_id: str) -> Consumer | None:
        return self.consumer if client_id == self.consumer.client_id else None

    def get_token_credential(self, request: OAuth1Request) -> TokenCredential | None:
        credential = self.store.tokens.get(request.token or "")
        if credential is None or credential.client_id != self.consumer.client_id:
            return None
        return credential

    def check(self, method: str, uri: str, body: Any, headers: Any) -> TokenCredential | None:
        try:
            request = self.validate_request(method, uri, body, headers)
        except OAuth1Error:
            return None
        return request.credential  # type: ignore[no-any-return]


__all__ = [
    "Consumer",
    "OAuth1Error",
    "OAuth1Request",
    "OAuth1Store",
    "SandboxOAuth1Protector",
    "SandboxOAuth1Server",
]
