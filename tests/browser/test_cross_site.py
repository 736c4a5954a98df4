"""Login-CSRF (R4) attacked from a real browser: a foreign page makes the end-user's Chromium
POST to a ``connect_url``. Whatever the browser sends by itself (a foreign ``Origin``,
``Origin: null`` under ``no-referrer``) is refused,
nothing is consumed, no cookie is set and no token request is made."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.fixtures.live_server import LiveServer

pytestmark = pytest.mark.db_independent  # never uses the database under test

EVIL = "http://evil.example"


def _evil_page(action: str, *, meta: str = "") -> str:
    form = (
        f'<form id=f method=post action="{html.escape(action, quote=True)}"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    return f"<!doctype html><html><head>{meta}</head><body>{form}</body></html>"


@pytest.mark.parametrize("variant", ["foreign-origin", "no-referrer-null-origin"])
def test_foreign_page_cannot_start_a_flow(live: LiveServer, page: Any, variant: str) -> None:
    end_user = f"csrf-{variant}"
    live.end_user(end_user)
    created = live.connect_session(end_user, "salesforce")
    meta = '<meta name="referrer" content="no-referrer">' if variant != "foreign-origin" else ""
    evil = _evil_page(created["connect_url"], meta=meta)
    page.route(
        re.compile(re.escape(EVIL) + ".*"),
        lambda route: route.fulfill(status=200, content_type="text/html", body=evil),
    )
    refused: list[int] = []
    page.on(
        "response",
        lambda r: refused.append(r.status) if r.url == created["connect_url"] else None,
    )
    page.goto(f"{EVIL}/win-a-prize")
    page.wait_for_timeout(200)
    page.wait_for_load_state()
    deadline = 50
    while not refused and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert refused == [403], refused
    assert page.context.cookies(live.base) == []
    session = live.api.get(f"/v1/connect-sessions/{created['id']}").json()
    assert session["status"] == "pending"
    # Not consumed: the end-user can still use the real link, from our own page.
    page.unroute(re.compile(re.escape(EVIL) + ".*"))
    page.goto(created["connect_url"])
    page.get_by_role("button", name=re.compile("Salesforce")).click()
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    assert "status=connected" in page.url
