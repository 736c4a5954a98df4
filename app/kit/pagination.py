"""Opaque cursors of our cursor-paginated lists.

A cursor is the unpadded URL-safe base64 of a one-key JSON object (``{"seq": 42}``,
``{"after": "acme"}``) naming where the next page starts. Clients pass it back unchanged;
anything that does not decode to the expected key and type is ``400 invalid_cursor``.
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, TypeVar

from fastapi import Query

from app.errors import BadRequest
from app.input_guard import text_problem

#: ``?limit=`` of a paginated list (the route sets its default).
PageLimit = Annotated[int, Query(ge=1, le=1000)]

T = TypeVar("T", int, str)

#: Cursors we mint are short; anything longer is not ours.
MAX_CURSOR_CHARS = 512
#: Integer cursors are database sequence numbers: a signed 64-bit column.
_MAX_INT = 2**63 - 1


def encode_cursor(key: str, value: int | str) -> str:
    """The cursor for ``{key: value}``."""
    raw = json.dumps({key: value}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, key: str, kind: type[T]) -> T | None:
    """The ``key`` value of ``cursor`` (``None`` for no cursor); it must be a ``kind``
    (exactly: ``True`` is no ``int``), a non-negative 64-bit integer or clean text (no NUL,
    no lone surrogate) — the database must be able to compare it."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))[key]
        if type(value) is not kind:
            raise ValueError
        if isinstance(value, int) and not 0 <= value <= _MAX_INT:
            raise ValueError
        if isinstance(value, str) and text_problem(value, max_length=200, controls=True):
            raise ValueError
        return value  # type: ignore[no-any-return]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise BadRequest("Invalid cursor", code="invalid_cursor") from exc
