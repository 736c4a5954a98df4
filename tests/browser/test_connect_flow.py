"""The end-user's path, clicked in a real Chromium: confirmation page → sandbox consent →
back to the company's ``return_to``. No header is injected anywhere: the browser chooses
``Origin``/``Sec-Fetch-Site``/cookies, which is what broke the confirmation POST before
(``no-referrer`` made Chromium send ``Origin: null`` to its own origin)."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # never uses the database under test


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _back(live: LiveServer) -> re.Pattern[str]:
    return re.compile(re.escape(live.return_to) + r"\?.*")


def _consent_flow(
    live: LiveServer, page: Any, end_user: str, decision: str = "Approve", **extra: Any
) -> dict[str, str]:
    """Open a fresh connect_url, click Continue, then ``decision`` on the sandbox consent
    page; returns the query the browser came back to ``return_to`` with, plus the session id
    and connect_url."""
    created = live.connect_session(end_user, "salesforce", **extra)
    page.goto(created["connect_url"])
    shot(page, f"{end_user}-1-confirmation")
    page.get_by_role("button", name=re.compile("Salesforce")).click()
    page.get_by_role("button", name=decision).wait_for()
    shot(page, f"{end_user}-2-consent")
    page.get_by_role("button", name=decision).click()
    page.wait_for_url(_back(live))
    shot(page, f"{end_user}-3-back")
    return {**_query(page.url), "session": created["id"], "url": created["connect_url"]}


def test_click_through_confirmation_and_consent_connects(live: LiveServer, page: Any) -> None:
    live.end_user("click-approve")
    back = _consent_flow(live, page, "click-approve")
    assert back["status"] == "connected", back
    connection = live.api.get(f"/v1/connections/{back['connection_id']}").json()
    assert connection["state"] == "connected"
    session = live.api.get(f"/v1/connect-sessions/{back['session']}").json()
    assert session["status"] == "completed"


def test_deny_at_consent_returns_with_an_error(live: LiveServer, page: Any) -> None:
    live.end_user("click-deny")
    back = _consent_flow(live, page, "click-deny", decision="Deny")
    assert back["status"] == "error" and back["error"] == "access_denied", back
    session = live.api.get(f"/v1/connect-sessions/{back['session']}").json()
    assert session["status"] == "failed"


def test_used_link_shows_an_error_page(live: LiveServer, page: Any) -> None:
    live.end_user("click-used")
    back = _consent_flow(live, page, "click-used")
    assert back["status"] == "connected"
    # The same link, opened again after it was used.
    page.goto(back["url"])
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()
    assert page.get_by_role("button").count() == 0


def test_expired_link_shows_an_error_page(live: LiveServer, page: Any) -> None:
    live.end_user("click-expired")
    created = live.connect_session("click-expired", "salesforce")
    # Age the session in the server's database (the clock is the only thing we move).
    past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(live.database_path) as conn:
        conn.execute(
            "UPDATE connect_sessions SET token_expires_at = ? WHERE id = ?", (past, created["id"])
        )
    page.goto(created["connect_url"])
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()
    assert page.get_by_role("button").count() == 0


def test_keyboard_only(live: LiveServer, page: Any) -> None:
    live.end_user("click-keyboard")
    created = live.connect_session("click-keyboard", "salesforce")
    page.goto(created["connect_url"])
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Approve").wait_for()
    page.keyboard.press("Tab")
    while page.evaluate("document.activeElement.textContent") != "Approve":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(_back(live))
    assert _query(page.url)["status"] == "connected"


def test_phone_viewport(live: LiveServer, phone: Any) -> None:
    live.end_user("click-phone")
    created = live.connect_session("click-phone", "salesforce")
    phone.goto(created["connect_url"])
    button = phone.get_by_role("button", name=re.compile("Salesforce"))
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "phone-confirmation")
    button.tap()
    phone.get_by_role("button", name="Approve").tap()
    phone.wait_for_url(_back(live))
    assert _query(phone.url)["status"] == "connected"


def test_reauthorize_a_broken_connection(live: LiveServer, page: Any) -> None:
    live.end_user("click-reauth")
    back = _consent_flow(live, page, "click-reauth")
    connection_id = back["connection_id"]
    fivetran_id = live.api.get(f"/v1/connections/{connection_id}").json()["fivetran_connection_id"]
    r = live.api.post(f"/sandbox/fivetran/_control/connections/{fivetran_id}/break")
    assert r.status_code == 200, r.text
    live.api.post("/sandbox/fivetran/_control/webhooks/drain")
    state = live.api.get(f"/v1/connections/{connection_id}?refresh=true").json()["state"]
    assert state == "broken"
    again = _consent_flow(live, page, "click-reauth", connection_id=connection_id)
    assert again["status"] == "connected" and again["connection_id"] == connection_id
    fresh = live.api.get(f"/v1/connections/{connection_id}?refresh=true").json()
    assert fresh["state"] == "connected"
