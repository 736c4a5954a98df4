"""Errors of the provider catalog and the token client.

Two families:

* :class:`ProviderConfigError` — the operator configuration or the shipped catalog is
  invalid; raised at startup with one message per problem.
* :class:`OAuthProviderError` — a call to a provider's token or revocation endpoint failed.
  ``error_code`` is always one of :data:`ALLOWED_ERROR_CODES`; a provider's own
  ``error_description`` is never kept, so it cannot leak into a redirect or a log line.
"""

from __future__ import annotations

ALLOWED_ERROR_CODES = frozenset(
    {
        # RFC 6749 §5.2 / §4.1.2.1 codes an authorization server may send back.
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "unsupported_response_type",
        "invalid_scope",
        "access_denied",
        "server_error",
        "temporarily_unavailable",
        # Our own, for failures detected on the client side.
        "invalid_token_response",
        "missing_refresh_token",
        "insufficient_scope",
        "token_endpoint_redirect",
        "token_endpoint_unavailable",
        "provider_error",
        "invalid_callback",
    }
)


def allowed_error_code(code: object) -> str:
    """Map any error string onto the allow-list (unknown codes → ``provider_error``)."""
    if isinstance(code, str) and code in ALLOWED_ERROR_CODES:
        return code
    return "provider_error"


class ProviderConfigError(RuntimeError):
    """The provider configuration is invalid; ``problems`` lists every item."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UnknownProvider(LookupError):
    """No provider with this key exists in the catalog or the configuration."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"unknown provider {key!r}")


class ProviderNotConfigured(LookupError):
    """The provider exists but no OAuth app (client id + secret) is configured for it."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no OAuth app configured for provider {key!r}")


class OAuthProviderError(Exception):
    """A token, refresh or revocation call failed.

    ``error_code`` is allow-listed (see :data:`ALLOWED_ERROR_CODES`); ``message`` is our own
    text (it may name a provider setting, never echoes the provider's description).
    ``status`` is the HTTP status of the provider's answer when there was one.
    """

    def __init__(
        self,
        error_code: str,
        *,
        provider_key: str,
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        self.error_code = allowed_error_code(error_code)
        self.provider_key = provider_key
        self.status = status
        self.message = message or f"{provider_key}: token endpoint answered {self.error_code}"
        super().__init__(self.message)

    @property
    def terminal(self) -> bool:
        """True when retrying with the same grant cannot succeed (re-consent needed)."""
        return self.error_code in {"invalid_grant", "invalid_client", "unauthorized_client"}


class CallbackVerificationError(OAuthProviderError):
    """A provider-specific callback check failed (e.g. Shopify's HMAC)."""

    def __init__(self, *, provider_key: str, message: str) -> None:
        super().__init__("invalid_callback", provider_key=provider_key, message=message)
