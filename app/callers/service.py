"""API-key lifecycle and authentication.

Key format: ``pbf_<key id>_<secret>`` where the secret has 256 bits. The database keeps the
key id and ``sha256(secret)``; authentication looks the row up by id and compares digests in
constant time, so a stolen database yields no usable key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from app import audit
from app.callers.keycache import key_cache
from app.callers.models import ApiKey
from app.db import utcnow
from app.errors import Forbidden, InvalidInput, NotFound, Unauthorized

SCOPES = ("read", "write", "admin")
_KEY_RE = re.compile(r"^pbf_([A-Za-z0-9]{12})_([A-Za-z0-9_\-]{43})\Z")
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of a request."""

    key_id: str
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    end_user_prefix: str | None = None

    def has_scope(self, scope: str) -> bool:
        return (
            "admin" in self.scopes
            or scope in self.scopes
            or (scope == "read" and "write" in self.scopes)
        )

    def can_access_end_user(self, external_id: str) -> bool:
        return self.end_user_prefix is None or external_id.startswith(self.end_user_prefix)

    def require_end_user(self, external_id: str) -> None:
        """Foreign end-users look exactly like unknown ones (404, never 403)."""
        if not self.can_access_end_user(external_id):
            raise NotFound(f"End-user '{external_id}' not found", code="end_user_not_found")


def end_user_prefix_clause(
    column: QueryableAttribute[str] | QueryableAttribute[str | None], prefix: str
) -> ColumnElement[bool]:
    """SQL filter "column starts with prefix", case-sensitive on every backend.

    ``LIKE`` (what ``startswith`` compiles to) ignores ASCII case on SQLite, which would let a
    key restricted to ``tenantA_`` list ``TENANTA_…``; a binary comparison of the leading
    characters does not.
    """
    return func.substr(column, 1, len(prefix)) == prefix


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _validate_scopes(scopes: list[str]) -> list[str]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise InvalidInput(
            f"Unknown scope(s): {', '.join(bad)}; allowed: {', '.join(SCOPES)}", field="scope"
        )
    return sorted(set(scopes)) or ["read", "write"]


async def create_api_key(
    session: AsyncSession, *, name: str, scopes: list[str], end_user_prefix: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key (shown once, never stored)."""
    if not name.strip():
        raise InvalidInput("name must not be empty", field="name")
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    key_id = "".join(secrets.choice(alphabet) for _ in range(12))
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        id=key_id,
        name=name.strip(),
        secret_hash=_digest(secret),
        scopes=_validate_scopes(scopes),
        end_user_prefix=end_user_prefix or None,
        created_at=utcnow(),
    )
    session.add(row)
    await audit.record(
        session,
        action="api_key.create",
        target_type="api_key",
        target_id=key_id,
        details={"name": row.name, "scopes": list(scopes), "end_user_prefix": end_user_prefix},
    )
    await session.flush()
    return row, f"pbf_{key_id}_{secret}"


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())


async def key_is_revoked(session: AsyncSession, key_id: str | None) -> bool:
    """True when ``key_id`` names a revoked (or no longer existing) key; None (no key: the
    CLI) is never revoked. What a key started dies with it (connect sessions)."""
    if key_id is None:
        return False
    row = await session.get(ApiKey, key_id, populate_existing=True)
    return row is None or row.revoked_at is not None


async def revoke_api_key(session: AsyncSession, key_id: str) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"API key '{key_id}' not found", code="api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        await audit.record(
            session, action="api_key.revoke", target_type="api_key", target_id=key_id
        )
        await session.flush()
    key_cache.forget(key_id)
    return row


async def authenticate(
    session: AsyncSession, authorization: str | None, *, cache_seconds: float = 0.0
) -> Caller:
    """Resolve ``Authorization: Bearer <key>``; 401 for missing, malformed, unknown, revoked.

    With ``cache_seconds`` > 0 a key verified here is remembered that long in this process
    (:mod:`app.callers.keycache`; revocation in this process takes effect at once)."""
    if not authorization:
        raise Unauthorized("Missing Authorization header", code="missing_credentials")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Use 'Authorization: Bearer <api key>'",
            code="invalid_credentials",
            headers={"WWW-Authenticate": 'Bearer error="invalid_request"'},
        )
    token = token.strip()
    now = utcnow()
    digest = key_cache.token_digest(token) if cache_seconds > 0 else None
    if digest is not None:
        cached = key_cache.get(digest, now, _LAST_USED_RESOLUTION)
        if cached is not None:
            return cached
    m = _KEY_RE.match(token)
    row = await session.get(ApiKey, m.group(1)) if m else None
    expected = row.secret_hash if row else _digest("no-such-key")
    supplied = _digest(m.group(2)) if m else _digest("")
    if row is None or not hmac.compare_digest(expected, supplied):
        raise Unauthorized(
            "Invalid API key",
            code="invalid_credentials",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if row.revoked_at is not None:
        raise Unauthorized(
            "API key has been revoked",
            code="revoked_credentials",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    last_used = row.last_used_at
    if last_used is None or now - last_used > _LAST_USED_RESOLUTION:
        await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        last_used = now
    caller = Caller(
        key_id=row.id,
        name=row.name,
        scopes=frozenset(row.scopes),
        end_user_prefix=row.end_user_prefix,
    )
    if digest is not None:
        key_cache.put(digest, caller, last_used, cache_seconds)
    return caller


def check_scope(caller: Caller, scope: str) -> None:
    if not caller.has_scope(scope):
        raise Forbidden(
            f"This API key lacks the '{scope}' scope",
            code="insufficient_scope",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
