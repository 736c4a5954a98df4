"""Fivetran's timestamps (``2026-05-22T00:06:08.638Z``) as aware datetimes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_fivetran_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp from a Fivetran response or webhook; naive values are UTC.

    Anything that is not a non-empty, parseable string gives ``None``.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
