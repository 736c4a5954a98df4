"""``Retry-After`` parsing shared by the Fivetran client and the event delivery worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from app.kit.transport import retry_after_seconds

pytestmark = pytest.mark.db_independent  # never uses the database under test


def _response(value: str | None) -> httpx.Response:
    return httpx.Response(429, headers={} if value is None else {"Retry-After": value})


@pytest.mark.parametrize(
    ("value", "expected"), [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), (None, None), ("soon", None)]
)
def test_delta_seconds(value, expected):
    assert retry_after_seconds(_response(value)) == expected


def test_http_date():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (retry_after_seconds(_response(later)) or 0) <= 120
    earlier = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(_response(earlier)) == 0.0
