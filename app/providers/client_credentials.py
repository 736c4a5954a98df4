"""Check client credentials before Fivetran gets them (client credentials grant, RFC 6749 §4.4).

Some services' Fivetran ``auth`` block takes a service principal (client id, client secret,
tenant) and Fivetran itself runs the client credentials grant. Their credential form would
otherwise accept garbage silently and fail only in Fivetran's setup test. So, once, before the
Fivetran create, we run the grant ourselves with authlib's ``AsyncOAuth2Client`` against the
provider's token endpoint and throw the token away:

* the provider refuses (``invalid_client``, ``unauthorized_client``, ``invalid_request`` …) →
  :class:`CredentialsRefused` (the caller turns it into a 422 naming the field);
* the provider cannot be reached, times out, redirects or answers 5xx →
  :class:`TokenEndpointUnreachable` (a 502 with ``code: client_credentials_unverifiable``).

Covered (:data:`CHECKS`): ``azure_blob_storage`` and ``microsoft_dynamics_365_fno`` (Microsoft
Entra ID, ``https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token``,
``client_secret_post``, scope ``https://storage.azure.com/.default``). In sandbox mode the
token endpoint is the sandbox's simulated one (``/sandbox/oauth/client-credentials/…``).
The other non-redirect grants are not checked; see the README (the private key stays with
Fivetran, the token URL is the end-user's own, or the auth block carries tokens, not a
client). The tenant is a URL path segment: only ``[A-Za-z0-9._-]`` is accepted.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client.errors import OAuthError

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")
    from authlib.integrations.httpx_client import AsyncOAuth2Client

log = logging.getLogger("pbf.providers.client_credentials")

SANDBOX_PATH = "/sandbox/oauth/client-credentials"
TENANT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
#: Provider answers that mean "these credentials are wrong" (anything else: unverifiable).
REFUSALS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_request", "invalid_grant", "invalid_scope"}
)


@dataclass(frozen=True)
class ClientCredentialsCheck:
    """Where and how a service's client credentials are tried."""

    token_url: str  # with {tenant_id}
    scope: str
    #: auth-block field names: (client id, client secret, tenant)
    client_id: str = "client_id"
    client_secret: str = "client_secret"
    tenant: str = "tenant_id"


_ENTRA = ClientCredentialsCheck(
    token_url="https://login.microsoftonline.com/{tenant_id}/oauth2/v2.0/token",
    scope="https://storage.azure.com/.default",
)
CHECKS: dict[str, ClientCredentialsCheck] = {
    "azure_blob_storage": _ENTRA,
    "microsoft_dynamics_365_fno": _ENTRA,
}


class CredentialsRefused(Exception):
    """The provider refused the credentials; ``field`` is the auth-block field to blame."""

    def __init__(self, field: str, error: str) -> None:
        super().__init__(f"the provider refused the client credentials ({error})")
        self.field = field
        self.error = error


class TokenEndpointUnreachable(Exception):
    """The provider's token endpoint could not give an answer (network, 5xx, redirect)."""


def token_url_for(service: str, tenant: str, *, sandbox_base: str | None) -> str | None:
    """The token endpoint for ``service`` and ``tenant`` (sandbox mode: the simulated one)."""
    check = CHECKS.get(service)
    if check is None:
        return None
    if sandbox_base is not None:
        return f"{sandbox_base.rstrip('/')}{SANDBOX_PATH}/{service}/{tenant}/token"
    return check.token_url.replace("{tenant_id}", tenant)


async def verify_client_credentials(
    service: str,
    auth: Mapping[str, Any],
    *,
    sandbox_base: str | None,
    transport: httpx.AsyncBaseTransport | None,
    timeout_seconds: float = 15.0,
) -> bool:
    """Run the grant once; False when ``service`` is not checked or the block is incomplete
    (the form's own validation reports missing fields). Raises on refusal/unreachable."""
    check = CHECKS.get(service)
    if check is None:
        return False
    client_id, secret, tenant = (
        auth.get(check.client_id),
        auth.get(check.client_secret),
        auth.get(check.tenant),
    )
    if not all(isinstance(v, str) and v for v in (client_id, secret, tenant)):
        return False
    assert isinstance(tenant, str) and isinstance(client_id, str) and isinstance(secret, str)
    if not TENANT.match(tenant):
        raise CredentialsRefused(check.tenant, "invalid_tenant")
    url = token_url_for(service, tenant, sandbox_base=sandbox_base)
    assert url is not None
    client = AsyncOAuth2Client(
        client_id=client_id,
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post",
        transport=transport,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
        follow_redirects=False,
        trust_env=False,
    )
    try:
        async with client:
            await client.fetch_token(
                url,
                grant_type="client_credentials",
                scope=check.scope,
                headers={"Accept": "application/json"},
            )
    except OAuthError as exc:
        error = str(exc.error or "")
        if error in REFUSALS:
            # Entra answers an unknown tenant with invalid_request (AADSTS90002).
            field = check.tenant if error == "invalid_request" else check.client_secret
            raise CredentialsRefused(field, error) from None
        raise TokenEndpointUnreachable(error or "provider_error") from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status in (400, 401):
            raise CredentialsRefused(check.client_secret, "invalid_client") from None
        raise TokenEndpointUnreachable(f"status {status}") from None
    except (httpx.HTTPError, ValueError) as exc:
        log.warning(
            "client credentials check: token endpoint unreachable",
            extra={"service": service, "error_type": type(exc).__name__},
        )
        raise TokenEndpointUnreachable(type(exc).__name__) from None
    return True
