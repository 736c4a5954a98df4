"""In-memory state of the sandbox authorization server (a simulation; one per app instance).

Holds authorization codes, grants, access and refresh tokens, pending consents, the
test-control queue of misbehaviours and a log of token-endpoint requests. Everything is
synchronous and mutated only from the event loop thread, so each operation is atomic.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin

CODE_TTL_SECONDS = 60
ACCESS_TOKEN_TTL_SECONDS = 3600
CONSENT_TTL_SECONDS = 600

MISBEHAVIOURS = (
    "no_refresh_token",
    "html_502",
    "error_200",
    "narrow_scope",
    "redirect_307",
    "string_expires_in",
    "missing_token_type",
)
#: Misbehaviours of the next authorization response (mix-up tests, RFC 9207).
AUTHORIZE_MISBEHAVIOURS = ("authorize_omit_iss", "authorize_wrong_iss")
#: Misbehaviours of the next simulated provider list call (account pickers).
LIST_MISBEHAVIOURS = ("list_502", "list_malformed")


@dataclass
class SandboxUser:
    username: str

    def get_user_id(self) -> str:
        return self.username


@dataclass
class SandboxClient(ClientMixin):
    """One sandbox OAuth client (one per provider): ``sandbox-<provider>``."""

    provider_key: str
    client_id: str
    client_secret: str = field(repr=False)
    auth_method: str
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    pkce_required: bool
    rotate_refresh_tokens: bool
    issues_refresh_tokens: bool
    display_name: str = ""

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # the redirect_uri parameter is always required (exact match)

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or ""

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact string comparison (RFC 9700 §2.1)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.auth_method
        # Introspection and revocation accept either standard method.
        return method in (self.auth_method, "client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scope: str
    user: SandboxUser
    code_challenge: str | None
    code_challenge_method: str | None
    offline: bool
    created_at: float = field(default_factory=time.time)
    used: bool = False
    grant_id: str | None = None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() > self.created_at + CODE_TTL_SECONDS


@dataclass
class Grant:
    """One consent: every token issued from one code belongs to it (revoked together)."""

    grant_id: str
    client_id: str
    user: SandboxUser
    scope: str
    metadata: dict[str, str] = field(default_factory=dict)
    revoked: bool = False


@dataclass
class IssuedToken(TokenMixin):
    """One token-endpoint answer: an access token plus (maybe) its refresh token."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    client_id: str
    grant_id: str
    scope: str
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    access_revoked: bool = False

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> None:
        return None

    def get_client(self) -> Any:  # pragma: no cover - not used by the sandbox
        return None


@dataclass
class RefreshRecord:
    """State of one refresh token: ``active``, ``rotated`` (used once) or ``revoked``."""

    token: str = field(repr=False)
    client_id: str
    grant_id: str
    scope: str
    state: str = "active"
    issued_at: float = field(default_factory=time.time)

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return 0

    def is_expired(self) -> bool:
        return False

    def is_revoked(self) -> bool:
        return self.state != "active"


@dataclass
class PendingConsent:
    consent_id: str
    provider_key: str
    query: list[tuple[str, str]]
    created_at: float = field(default_factory=time.time)


@dataclass
class TokenRequestLog:
    provider_key: str
    grant_type: str
    at: float


class SandboxStore:
    """All mutable state of one sandbox authorization server."""

    def __init__(self) -> None:
        self.codes: dict[str, AuthorizationCode] = {}
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, RefreshRecord] = {}
        self.consents: dict[str, PendingConsent] = {}
        self.misbehaviours: dict[str, deque[str]] = {}
        self.token_requests: list[TokenRequestLog] = []

    # --- grants ---------------------------------------------------------------------------

    def prune(self) -> None:
        """Drop expired codes and consents (keeps a long-running sandbox bounded)."""
        now = time.time()
        self.codes = {
            k: c for k, c in self.codes.items() if c.created_at + 10 * CODE_TTL_SECONDS > now
        }
        self.consents = {
            k: c for k, c in self.consents.items() if c.created_at + CONSENT_TTL_SECONDS > now
        }
        if len(self.token_requests) > 10_000:
            del self.token_requests[:-10_000]

    def new_grant(self, client_id: str, user: SandboxUser, scope: str) -> Grant:
        grant = Grant(
            grant_id=secrets.token_urlsafe(12), client_id=client_id, user=user, scope=scope
        )
        self.grants[grant.grant_id] = grant
        return grant

    def revoke_grant(self, grant_id: str | None) -> None:
        """Revoke a grant and every token issued under it (replay / reuse detection)."""
        if grant_id is None or grant_id not in self.grants:
            return
        self.grants[grant_id].revoked = True
        for token in self.access_tokens.values():
            if token.grant_id == grant_id:
                token.access_revoked = True
        for record in self.refresh_tokens.values():
            if record.grant_id == grant_id:
                record.state = "revoked"

    def grant_active(self, grant_id: str) -> bool:
        grant = self.grants.get(grant_id)
        return grant is not None and not grant.revoked

    # --- control ----------------------------------------------------------------------------

    def queue_misbehaviour(self, provider_key: str, kind: str, count: int = 1) -> None:
        queue = self.misbehaviours.setdefault(provider_key, deque())
        queue.extend([kind] * count)

    def pop_misbehaviour(self, provider_key: str, *, stage: str = "token") -> str | None:
        """Next queued misbehaviour of ``stage`` (``token``, ``authorize`` or ``list``) for a
        provider."""
        kinds = {"authorize": AUTHORIZE_MISBEHAVIOURS, "list": LIST_MISBEHAVIOURS}.get(
            stage, MISBEHAVIOURS
        )
        for key in (provider_key, "*"):
            queue = self.misbehaviours.get(key)
            if not queue:
                continue
            for index, kind in enumerate(queue):
                if kind in kinds:
                    del queue[index]
                    return kind
        return None

    def log_token_request(self, provider_key: str, grant_type: str) -> None:
        self.token_requests.append(TokenRequestLog(provider_key, grant_type, time.time()))

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]
