"""The transactional outbox: :func:`emit` writes an event in the caller's transaction.

Contract: ``await emit(session, *, kind, data, connection_id=None,
end_user_external_id=None)``. No I/O happens here: the row commits (or rolls back) together
with the state change it reports, and the worker delivers it afterwards. Fan-out to the
configured endpoints happens in the worker, so ``emit`` needs no settings.

``data`` carries ids and states only. As a guard, keys that name a secret (``token``,
``secret``, ``password``…) are refused with ``ValueError`` — a programming error, not input.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, utcnow
from app.events.kinds import EVENT_KINDS
from app.events.models import Event

_SECRET_KEY = re.compile(
    r"(token|secret|password|passphrase|private_key|credential|api_key|code_verifier)", re.I
)


def _check_no_secrets(value: Any, path: str = "data") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if _SECRET_KEY.search(str(key)):
                raise ValueError(f"event {path}.{key} looks like a secret; events carry ids only")
            _check_no_secrets(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_no_secrets(item, f"{path}[{i}]")


def _jsonable(value: Any) -> Any:
    """Datetimes become ISO 8601 strings (UTC); containers are copied."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def emit(
    session: AsyncSession,
    *,
    kind: str,
    data: dict[str, Any],
    connection_id: str | None = None,
    end_user_external_id: str | None = None,
) -> Event:
    """Write one outbound event into the outbox, in the caller's transaction (flush only).

    ``connection_id`` orders deliveries (per endpoint, events of one connection go out in
    the order they were emitted) and filters ``GET /v1/events``; ``end_user_external_id``
    scopes the event to keys restricted to an end-user prefix. Both are added to ``data``
    (as ``connection_id`` / ``end_user``) when ``data`` does not name them already.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    _check_no_secrets(data)
    payload: dict[str, Any] = _jsonable(data)
    if connection_id is not None:
        payload.setdefault("connection_id", connection_id)
    if end_user_external_id is not None:
        payload.setdefault("end_user", end_user_external_id)
    event = Event(
        id=new_id("evt"),
        kind=kind,
        connection_id=connection_id,
        end_user_external_id=end_user_external_id,
        data=payload,
        created_at=utcnow(),
    )
    session.add(event)
    await session.flush()
    return event
