"""OAuth 1.0a (RFC 5849) providers: X (Twitter) organic and X Ads.

Fivetran's ``twitter`` and ``twitter_ads`` services take an OAuth 1.0a grant in their ``auth``
block (``consumer_key``, ``consumer_secret``, ``oauth_token``, ``oauth_token_secret``). These
providers are not OAuth 2.0 authorization servers, so they live beside the OAuth 2.0 registry
(:class:`OAuth1Registry`, ``registry.oauth1``) instead of pretending to be one.

The client side is authlib's httpx ``AsyncOAuth1Client`` (HMAC-SHA1 signatures, parameters in
the ``Authorization`` header), one instance per call on the shared outbound transport, with
``follow_redirects=False`` and explicit timeouts (R14):

1. :func:`fetch_request_token` — temporary credentials with ``oauth_callback`` = our one
   configured callback URL (RFC 5849 §2.1; ``oauth_callback_confirmed=true`` is required);
2. :func:`authorization_url` — the provider's authorize URL for that request token (§2.2);
3. :func:`fetch_access_token` — token credentials for the request token + ``oauth_verifier``
   (§2.3), signed with the request token's secret.

The consumer key/secret are the operator's app (``PBF_OAUTH__APPS__TWITTER__CLIENT_ID`` /
``__CLIENT_SECRET`` or ``__CLIENT_SECRET_FILE``). In sandbox mode a provider without a
configured app points at the embedded sandbox OAuth 1.0a server (a simulation,
``/sandbox/oauth/oauth1/<key>/…``) with generated credentials. Errors are
:class:`~app.providers.errors.OAuthProviderError` with an allow-listed code; nothing here logs
a token, a secret or a provider's error text.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from authlib.common.urls import add_params_to_uri

from app.errors import InvalidInput
from app.providers.errors import OAuthProviderError, ProviderNotConfigured
from app.providers.spec import InputSpec, Verification
from app.vault.secret import Secret

with warnings.catch_warnings():
    # The project pins httpx (authlib prefers its "httpx2" fork and warns on the fallback).
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth1Client

log = logging.getLogger("pbf.providers.oauth1")

DEFAULT_TIMEOUT_SECONDS = 15.0
SANDBOX_OAUTH1_PATH = "/sandbox/oauth/oauth1"
#: The provider facts (``oauth-catalog-facts.yaml``, grant ``oauth1a``): X's OAuth 1.0a
#: endpoints serve both the organic and the Ads service.
CATALOG: dict[str, dict[str, Any]] = {
    "twitter": {
        "display_name": "X (Twitter) organic",
        "fivetran_service": "twitter",
        "issuer": "https://api.twitter.com",
        "request_token_url": "https://api.twitter.com/oauth/request_token",
        "authorization_url": "https://api.twitter.com/oauth/authorize",
        "access_token_url": "https://api.twitter.com/oauth/access_token",
        "fivetran_config": {},
    },
    "twitter_ads": {
        "display_name": "X (Twitter) Ads",
        "fivetran_service": "twitter_ads",
        "issuer": "https://api.twitter.com",
        "request_token_url": "https://api.twitter.com/oauth/request_token",
        "authorization_url": "https://api.twitter.com/oauth/authorize",
        "access_token_url": "https://api.twitter.com/oauth/access_token",
        # Our consumer key is handed over: Fivetran must use these app credentials.
        "fivetran_config": {"is_custom_api_credentials": True},
    },
}
#: Keys of the OAuth 1.0a providers (their ``PBF_OAUTH__APPS__<KEY>`` apps are theirs).
OAUTH1_KEYS = frozenset(CATALOG)


@dataclass(frozen=True)
class OAuth1Endpoints:
    """The endpoints pinned in a flow row (``issuer`` is the provider's origin)."""

    issuer: str
    request_token_url: str
    authorization_url: str
    access_token_url: str


@dataclass(frozen=True)
class OAuth1Credentials:
    """The consumer (app) credentials: ``client_id`` = consumer key."""

    client_id: str
    client_secret: Secret


@dataclass(frozen=True)
class OAuth1Token:
    """Token credentials (RFC 5849 §2.3); both halves secret."""

    oauth_token: Secret
    oauth_token_secret: Secret
    #: Non-secret account identity the provider returned (X: user_id, screen_name).
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OAuth1Provider:
    """One OAuth 1.0a source app. Shares the small interface the connect-session code uses
    with :class:`~app.providers.registry.Provider` (``key``, ``display_name``, inputs,
    ``endpoints``)."""

    key: str
    display_name: str
    fivetran_service: str
    endpoints_: OAuth1Endpoints
    credentials: OAuth1Credentials
    fivetran_config: dict[str, Any] = field(default_factory=dict)
    sandboxed: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    verification: Verification = field(default_factory=Verification)
    #: Sandbox only: a signed "who am I" resource the Fivetran simulator checks tokens at.
    verify_url: str | None = None

    kind = "oauth1"

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        return ()

    @property
    def scopes(self) -> tuple[str, ...]:
        return ()

    def validate_inputs(self, raw: Mapping[str, Any]) -> dict[str, str]:
        if raw:
            raise InvalidInput(f"{self.key} takes no inputs", code="invalid_config", field="inputs")
        return {}

    def endpoints(self, inputs: Mapping[str, str] | None = None) -> OAuth1Endpoints:
        return self.endpoints_

    def fivetran_auth(self, token: OAuth1Token) -> dict[str, str]:
        """The ``auth`` block of Fivetran's twitter/twitter_ads request schema."""
        return {
            "consumer_key": self.credentials.client_id,
            "consumer_secret": self.credentials.client_secret.reveal(),
            "oauth_token": token.oauth_token.reveal(),
            "oauth_token_secret": token.oauth_token_secret.reveal(),
        }


class OAuth1Registry:
    """The OAuth 1.0a providers that have an app (configured, or sandbox-generated)."""

    def __init__(self, providers: Mapping[str, OAuth1Provider] | None = None) -> None:
        self._providers = dict(providers or {})

    def find(self, key: str) -> OAuth1Provider | None:
        return self._providers.get(key)

    def get(self, key: str) -> OAuth1Provider:
        provider = self._providers.get(key)
        if provider is None:
            raise ProviderNotConfigured(key)
        return provider

    def for_service(self, service: str) -> OAuth1Provider | None:
        for provider in self._providers.values():
            if provider.fivetran_service == service:
                return provider
        return None

    def all(self) -> list[OAuth1Provider]:
        return list(self._providers.values())


def sandbox_endpoints(key: str, public_base_url: str) -> OAuth1Endpoints:
    base = f"{public_base_url.rstrip('/')}{SANDBOX_OAUTH1_PATH}/{key}"
    return OAuth1Endpoints(
        issuer=base,
        request_token_url=f"{base}/request_token",
        authorization_url=f"{base}/authorize",
        access_token_url=f"{base}/access_token",
    )


def build_oauth1_registry(
    *,
    is_sandbox: bool,
    public_base_url: str,
    apps: Mapping[str, tuple[str, Secret]],
    sandbox_credentials: Mapping[str, tuple[str, Secret]],
    verification: Mapping[str, Verification],
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> OAuth1Registry:
    """Providers with a configured app (``apps``: key → consumer key, secret) point at the
    real endpoints; in sandbox mode the others point at the sandbox server."""
    providers: dict[str, OAuth1Provider] = {}
    for key, entry in CATALOG.items():
        sandboxed = False
        if key in apps:
            client_id, secret = apps[key]
            endpoints = OAuth1Endpoints(
                issuer=entry["issuer"],
                request_token_url=entry["request_token_url"],
                authorization_url=entry["authorization_url"],
                access_token_url=entry["access_token_url"],
            )
        elif is_sandbox:
            client_id, secret = sandbox_credentials[key]
            endpoints = sandbox_endpoints(key, public_base_url)
            sandboxed = True
        else:
            continue
        providers[key] = OAuth1Provider(
            key=key,
            display_name=entry["display_name"],
            fivetran_service=entry["fivetran_service"],
            endpoints_=endpoints,
            credentials=OAuth1Credentials(client_id, secret),
            fivetran_config=dict(entry["fivetran_config"]),
            sandboxed=sandboxed,
            timeout_seconds=timeout_seconds,
            verification=verification.get(entry["fivetran_service"], Verification()),
            verify_url=f"{endpoints.issuer}/verify_credentials" if sandboxed else None,
        )
    return OAuth1Registry(providers)


# --- client --------------------------------------------------------------------------------


def _client(
    provider: OAuth1Provider,
    *,
    transport: httpx.AsyncBaseTransport | None,
    token: str | None = None,
    token_secret: str | None = None,
    redirect_uri: str | None = None,
) -> Any:
    seconds = provider.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
    return AsyncOAuth1Client(
        provider.credentials.client_id,
        provider.credentials.client_secret.reveal(),
        token=token,
        token_secret=token_secret,
        redirect_uri=redirect_uri,
        transport=transport,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
        follow_redirects=False,
        trust_env=False,
    )


async def _post_signed(
    provider: OAuth1Provider, client: AsyncOAuth1Client, url: str
) -> dict[str, str]:
    """POST a signed request; the form-encoded answer of a 200, else OAuthProviderError."""
    try:
        response = await client.post(
            url,
            headers={"Accept": "application/x-www-form-urlencoded, application/json"},
            extensions={"pbf_target": f"oauth:{provider.key}"},
        )
        text = (await response.aread()).decode("utf-8", errors="replace")
    except httpx.HTTPError as exc:
        log.warning(
            "oauth1 endpoint unreachable",
            extra={"provider": provider.key, "error_type": type(exc).__name__},
        )
        raise OAuthProviderError("token_endpoint_unavailable", provider_key=provider.key) from None
    if 300 <= response.status_code < 400:
        raise OAuthProviderError(
            "token_endpoint_redirect", provider_key=provider.key, status=response.status_code
        )
    if response.status_code == 401:
        raise OAuthProviderError("invalid_grant", provider_key=provider.key, status=401)
    if response.status_code >= 500:
        raise OAuthProviderError(
            "temporarily_unavailable", provider_key=provider.key, status=response.status_code
        )
    if response.status_code != 200:
        raise OAuthProviderError(
            "invalid_request", provider_key=provider.key, status=response.status_code
        )
    values = dict(parse_qsl(text, keep_blank_values=True))
    if not values.get("oauth_token") or not values.get("oauth_token_secret"):
        raise OAuthProviderError(
            "invalid_token_response", provider_key=provider.key, status=response.status_code
        )
    return values


async def fetch_request_token(
    provider: OAuth1Provider,
    *,
    callback_url: str,
    request_token_url: str,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[str, Secret]:
    """Temporary credentials ``(oauth_token, oauth_token_secret)`` (RFC 5849 §2.1)."""
    async with _client(provider, transport=transport, redirect_uri=callback_url) as client:
        values = await _post_signed(provider, client, request_token_url)
    if values.get("oauth_callback_confirmed") != "true":
        # §2.1: the server MUST confirm it took our callback (else a 1.0 server: refuse).
        raise OAuthProviderError("invalid_token_response", provider_key=provider.key)
    return values["oauth_token"], Secret(values["oauth_token_secret"])


def authorization_url(authorize_endpoint: str, request_token: str) -> str:
    """The provider's resource-owner authorization URL for a request token (§2.2)."""
    return add_params_to_uri(authorize_endpoint, [("oauth_token", request_token)])


async def fetch_access_token(
    provider: OAuth1Provider,
    *,
    access_token_url: str,
    request_token: str,
    request_token_secret: Secret,
    verifier: str,
    transport: httpx.AsyncBaseTransport | None,
) -> OAuth1Token:
    """Token credentials for an authorized request token (§2.3)."""
    async with _client(
        provider,
        transport=transport,
        token=request_token,
        token_secret=request_token_secret.reveal(),
    ) as client:
        client.auth.verifier = verifier
        values = await _post_signed(provider, client, access_token_url)
    metadata = {k: values[k] for k in ("user_id", "screen_name") if values.get(k)}
    return OAuth1Token(
        oauth_token=Secret(values["oauth_token"]),
        oauth_token_secret=Secret(values["oauth_token_secret"]),
        metadata=metadata,
    )


async def verify_token(
    *,
    url: str,
    consumer_key: str,
    consumer_secret: str,
    oauth_token: str,
    oauth_token_secret: str,
    transport: httpx.AsyncBaseTransport | None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> bool:
    """A signed GET of ``url`` with the token credentials: True on 200 (the sandbox's
    ``verify_credentials``; any failure is False)."""
    client = AsyncOAuth1Client(
        consumer_key,
        consumer_secret,
        token=oauth_token,
        token_secret=oauth_token_secret,
        transport=transport,
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        trust_env=False,
    )
    try:
        async with client:
            response = await client.get(url, extensions={"pbf_target": "oauth:oauth1"})
    except httpx.HTTPError:
        return False
    return response.status_code == 200
