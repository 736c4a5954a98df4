"""``Idempotency-Key`` for creating POSTs (reusable by any router).

The same key and the same body within the TTL (``api.idempotency_ttl_hours``, 24 h) return
the first response; the same key with a different body is ``409 idempotency_key_reused``.
Only SHA-256 digests of the key and of the canonical request body are stored, with the
caller's key id and a scope (e.g. ``POST /v1/connections``), so keys of different callers
never meet.

Long creates that commit a durable point part-way (a connection row before the Fivetran call)
record the id of what they started with :meth:`IdempotencyHandle.remember_resource` *before*
that commit: a retry with the same key after a failure then gets ``handle.resume_id`` and
finishes that resource instead of starting a second one.

Every creating endpoint runs the protocol through :func:`run_create` (one mechanism)::

    async def create(handle: IdempotencyHandle) -> tuple[Response, dict]:
        ... create (handle.resume_id may name what a failed first attempt started) ...
        return response, body_to_store

    return await idempotency.run_create(session, caller_id=caller.key_id,
                                        scope="POST /v1/connections", key=idempotency_key,
                                        body=payload.model_dump(mode="json"),
                                        ttl_hours=settings.api.idempotency_ttl_hours,
                                        create=create)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import try_insert, utcnow
from app.errors import BadRequest, Conflict
from app.kit.models import IdempotencyKey

MAX_KEY_LENGTH = 255

R = TypeVar("R")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def request_fingerprint(body: Any, key: str) -> str:
    """HMAC-SHA256 of the canonical JSON body (key order does not matter), keyed with the
    caller's Idempotency-Key.

    Bodies can carry credentials; only ``sha256(key)`` is stored, so the stored fingerprint
    gives someone holding a copy of the database nothing to test guessed passwords against.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(key.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class IdempotencyHandle:
    """What :func:`begin` found: a replay, a resource to resume, or a fresh start."""

    row: IdempotencyKey | None = None
    replay: tuple[int, Any] | None = None
    resume_id: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def replay_response(self) -> JSONResponse:
        assert self.replay is not None
        status, body = self.replay
        return JSONResponse(body, status_code=status, headers={"Idempotent-Replayed": "true"})

    async def remember_resource(self, session: AsyncSession, resource_id: str) -> None:
        if self.row is not None:
            self.row.resource_id = resource_id
            await session.flush()

    async def complete(self, session: AsyncSession, *, status_code: int, body: Any) -> None:
        if self.row is not None:
            self.row.response_status = status_code
            self.row.response_body = json.dumps(body, default=str)
            await session.flush()


async def begin(
    session: AsyncSession,
    *,
    caller_id: str,
    scope: str,
    key: str | None,
    body: Any,
    ttl_hours: int = 24,
) -> IdempotencyHandle:
    """Look the key up (or register it). No key → a handle that records nothing."""
    if key is None:
        return IdempotencyHandle()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            code="invalid_idempotency_key",
        )
    key_hash = _digest(key)
    fingerprint = request_fingerprint(body, key)
    now = utcnow()
    row = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.caller_id == caller_id,
            IdempotencyKey.scope == scope,
            IdempotencyKey.key_hash == key_hash,
        )
    )
    if row is not None and row.expires_at <= now:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row.id))
        row = None
    if row is not None:
        if not hmac.compare_digest(row.request_hash, fingerprint):
            raise Conflict(
                "This Idempotency-Key was used with a different request body",
                code="idempotency_key_reused",
            )
        if row.response_status is not None and row.response_body is not None:
            return IdempotencyHandle(
                row=row, replay=(row.response_status, json.loads(row.response_body))
            )
        if row.resource_id is None:
            raise Conflict(
                "A request with this Idempotency-Key is still in progress",
                code="idempotency_key_in_progress",
            )
        return IdempotencyHandle(row=row, resume_id=row.resource_id)
    row = IdempotencyKey(
        caller_id=caller_id,
        scope=scope,
        key_hash=key_hash,
        request_hash=fingerprint,
        created_at=now,
        expires_at=now + timedelta(hours=ttl_hours),
    )
    if not await try_insert(session, row):
        raise Conflict(
            "A request with this Idempotency-Key is still in progress",
            code="idempotency_key_in_progress",
        )
    return IdempotencyHandle(row=row)


async def run_create(
    session: AsyncSession,
    *,
    caller_id: str,
    scope: str,
    key: str | None,
    body: Any,
    ttl_hours: int,
    create: Callable[[IdempotencyHandle], Awaitable[tuple[R, Any]]],
    replay: Callable[[Any], Awaitable[R | JSONResponse]] | None = None,
    status_code: int = 201,
) -> R | JSONResponse:
    """The whole ``Idempotency-Key`` protocol of a creating endpoint.

    A replay returns the stored response (or ``replay(stored_body)`` when the stored body is
    not the whole answer, e.g. a single-use URL that is re-issued); otherwise ``create(handle)``
    returns ``(response, body to store)`` and the body is recorded with ``status_code``.
    """
    handle = await begin(
        session, caller_id=caller_id, scope=scope, key=key, body=body, ttl_hours=ttl_hours
    )
    if handle.replay is not None:
        if replay is None:
            return handle.replay_response()
        return await replay(handle.replay[1])
    response, stored = await create(handle)
    await handle.complete(session, status_code=status_code, body=stored)
    return response


async def purge_expired(session: AsyncSession) -> int:
    """Delete expired keys (housekeeping; safe to run any time)."""
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
