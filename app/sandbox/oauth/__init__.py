"""Sandbox OAuth 2.0 authorization server — a **simulation** for local use and tests.

Built on authlib's authorization-server components (RFC 6749 grants, RFC 7636 S256 PKCE,
RFC 7662 introspection, RFC 7009 revocation, RFC 9207 ``iss``) with an in-memory store; it
emulates the provider quirks the connect flow depends on. Mounted at ``/sandbox/oauth`` in
sandbox mode (:func:`mount_sandbox_oauth`), never in production; also runnable standalone
(:func:`create_sandbox_oauth_app`, e.g. ``uvicorn --factory
app.sandbox.oauth:create_sandbox_oauth_app``).

:func:`introspect_token` lets other sandbox components (the Fivetran simulator's setup
tests) ask whether a handed-over token is still active.
"""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import httpx

from app.providers.registry import AppCredentials, sandbox_client_id, sandbox_client_secret
from app.sandbox.oauth.app import SandboxOAuth, create_sandbox_oauth_app, mount_sandbox_oauth
from app.vault.secret import Secret


async def introspect_token(
    http: httpx.AsyncClient, base_url: str, provider_key: str, token: str | Secret
) -> bool:
    """RFC 7662 introspection at the sandbox server: True when ``token`` is active.

    Authenticates as the provider's sandbox client (RFC 6749 §2.3.1 Basic encoding). Any
    failure (unknown provider, transport error, non-JSON) counts as inactive.
    """
    url = f"{base_url.rstrip('/')}/sandbox/oauth/{provider_key}/introspect"
    credentials = AppCredentials(
        sandbox_client_id(provider_key), Secret(sandbox_client_secret(provider_key)), {}
    )
    return await introspect_at(http, url, provider_key, credentials, token)


async def introspect_at(
    http: httpx.AsyncClient,
    url: str,
    provider_key: str,
    credentials: AppCredentials,
    token: str | Secret,
) -> bool:
    """RFC 7662 introspection at ``url`` with the app's client credentials (HTTP Basic)."""
    value = token.reveal() if isinstance(token, Secret) else token
    basic = f"{quote_plus(credentials.client_id)}:{quote_plus(credentials.client_secret.reveal())}"
    headers = {
        "Authorization": "Basic " + base64.b64encode(basic.encode()).decode(),
        "Accept": "application/json",
    }
    try:
        response = await http.post(
            url,
            data={"token": value},
            headers=headers,
            extensions={"pbf_target": f"oauth:{provider_key}"},
        )
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return False
    return response.status_code == 200 and isinstance(body, dict) and body.get("active") is True


__all__ = [
    "SandboxOAuth",
    "create_sandbox_oauth_app",
    "introspect_at",
    "introspect_token",
    "mount_sandbox_oauth",
]
