"""Tests here run against the events app (:func:`tests.fixtures.events.events_app`).

It overrides the root ``app`` (used by ``make_api_key``/``auth_headers``): a second app on
the same database with its own background worker and no endpoints would fan events out to
nobody before our worker sees them.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI


@pytest.fixture
async def app(events_app: FastAPI) -> FastAPI:
    return events_app
