"""Credential forms whose auth block holds a service principal: try the credentials once at
the provider before anything is written (see :mod:`app.providers.client_credentials`).

A refusal is a 422 naming the auth-block field (``config.auth.client_secret``,
``code: invalid_credentials``); an unreachable token endpoint is a 502
``client_credentials_unverifiable`` — nothing is stored and Fivetran is not called either way.
"""

from __future__ import annotations

from typing import Any

from app.errors import UpstreamError, invalid_fields
from app.providers.client_credentials import (
    CredentialsRefused,
    TokenEndpointUnreachable,
    verify_client_credentials,
)
from app.sources.auth_forms import AUTH_KEY
from app.state import AppState


async def check_client_credentials(
    app_state: AppState, service: str, config: dict[str, Any]
) -> None:
    """Raise the 422/502 problem when ``config``'s auth block is refused or unverifiable."""
    auth = config.get(AUTH_KEY)
    if not isinstance(auth, dict):
        return
    settings = app_state.settings
    try:
        await verify_client_credentials(
            service,
            auth,
            sandbox_base=settings.public_base_url if settings.is_sandbox else None,
            transport=app_state.outbound_transport,
            timeout_seconds=settings.oauth.token_timeout_seconds,
        )
    except CredentialsRefused as exc:
        raise invalid_fields(
            [
                {
                    "field": f"config.{AUTH_KEY}.{exc.field}",
                    "code": "invalid_credentials",
                    "message": f"The provider refused these client credentials ({exc.error}); "
                    f"check '{AUTH_KEY}.client_id', '{AUTH_KEY}.client_secret' and "
                    f"'{AUTH_KEY}.tenant_id'",
                }
            ],
            code="invalid_credentials",
        ) from None
    except TokenEndpointUnreachable:
        raise UpstreamError(
            f"The token endpoint of '{service}' could not be reached to verify the client "
            "credentials; nothing was created, retry later",
            code="client_credentials_unverifiable",
        ) from None
