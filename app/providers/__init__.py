"""OAuth provider catalog and token-endpoint client.

Public surface (everything else is private):

* :class:`ProviderRegistry` (``app.state.providers``, built by
  :func:`app.providers.startup.start_providers`): ``get``, ``for_service``, ``configured``,
  ``await credentials(session, key)``.
* :class:`Provider`: ``key``, ``fivetran_service``, ``display_name``, ``scopes``, ``inputs``
  (JSON Schema), ``requires_refresh_token``, ``validate_inputs``, ``endpoints``,
  ``callback_code``/``callback_metadata``/``verify_callback``, ``fivetran_parts`` (its
  :class:`FivetranParts`: ``fivetran_auth`` values for the payload builder to place, and
  ``fivetran_config`` additions).
* :class:`TokenResult` (tokens wrapped in :class:`~app.vault.Secret`).
* :func:`build_authorization_url`, :func:`exchange_code`, :func:`refresh`, :func:`revoke`.
* Errors: :class:`OAuthProviderError` (allow-listed ``error_code``),
  :class:`ProviderConfigError`, :class:`UnknownProvider`, :class:`ProviderNotConfigured`,
  :class:`CallbackVerificationError`.

The catalog is data (``catalog.yaml``, schema :class:`~app.providers.spec.ProviderSpec`);
quirks are named hooks in :mod:`app.providers.hooks`.
"""

from app.providers.client import (
    build_authorization_url,
    code_challenge,
    exchange_code,
    refresh,
    revoke,
    scope_string,
)
from app.providers.errors import (
    ALLOWED_ERROR_CODES,
    CallbackVerificationError,
    OAuthProviderError,
    ProviderConfigError,
    ProviderNotConfigured,
    UnknownProvider,
)
from app.providers.registry import AppCredentials, Endpoints, Provider, ProviderRegistry
from app.providers.tokens import TokenResult

__all__ = [
    "ALLOWED_ERROR_CODES",
    "AppCredentials",
    "CallbackVerificationError",
    "Endpoints",
    "OAuthProviderError",
    "Provider",
    "ProviderConfigError",
    "ProviderNotConfigured",
    "ProviderRegistry",
    "TokenResult",
    "UnknownProvider",
    "build_authorization_url",
    "code_challenge",
    "exchange_code",
    "refresh",
    "revoke",
    "scope_string",
]
