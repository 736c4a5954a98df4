"""``/docs`` renders in a real Chromium with every request outside the server blocked: the
Swagger UI and ReDoc assets come from the app itself, and the OpenAPI 3.1 document renders."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # never uses the database under test


def _offline(live: LiveServer, page: Any) -> list[str]:
    """Abort every request that does not go to the server; return the ones tried."""
    outside: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(live.base + "/"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return outside


def test_swagger_ui_renders_offline(live: LiveServer, page: Any) -> None:
    outside = _offline(live, page)
    page.goto(f"{live.base}/docs")
    page.locator(".swagger-ui .info .title", has_text="pbf-headless").wait_for(timeout=20_000)
    page.locator(".opblock-summary-path", has_text="/v1/sources").first.wait_for()
    shot(page, "docs-swagger-offline")
    assert outside == []


def test_redoc_renders_offline(live: LiveServer, page: Any) -> None:
    outside = _offline(live, page)
    page.goto(f"{live.base}/redoc")
    page.get_by_role("heading", name=re.compile("pbf-headless")).first.wait_for(timeout=20_000)
    shot(page, "docs-redoc-offline")
    assert outside == []
