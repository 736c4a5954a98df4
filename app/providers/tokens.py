"""The result of a code exchange or refresh, with every secret wrapped.

:class:`TokenResult` is what the connect flow stores in the vault and hands to onboarding:
tokens are :class:`~app.vault.Secret` values (masked ``repr``; ``.reveal()`` to use them),
the rest is non-secret metadata (issuer, client id, granted scope, ``instance_url`` …).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.vault.secret import Secret


@dataclass(frozen=True, slots=True)
class TokenResult:
    """Validated token-endpoint answer (RFC 6749 §5.1, after provider quirks are undone)."""

    provider_key: str
    access_token: Secret | None
    refresh_token: Secret | None
    expires_at: datetime | None
    granted_scope: str | None
    issuer: str
    client_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    #: Requested scopes the provider did not grant (a narrower grant is flagged here; a
    #: missing *required* scope fails the exchange with ``insufficient_scope``).
    missing_scopes: tuple[str, ...] = ()
    #: After a refresh: True when the provider returned a new refresh token (rotation),
    #: False when it returned none or the same one; None after a code exchange.
    rotated: bool | None = None
    token_type: str = "bearer"
    #: The token response without its secrets (no access/refresh/id token): where an
    #: account identity may be read (``data.gid``, Salesforce ``id`` …).
    response_fields: Mapping[str, Any] = field(default_factory=dict)
    #: The OpenID Connect ``id_token`` when the token endpoint returned one.
    id_token: Secret | None = None

    def __repr__(self) -> str:  # never show token values, even masked ones in bulk
        return (
            f"TokenResult(provider_key={self.provider_key!r}, issuer={self.issuer!r}, "
            f"has_refresh_token={self.refresh_token is not None}, "
            f"expires_at={self.expires_at!r}, granted_scope={self.granted_scope!r})"
        )
