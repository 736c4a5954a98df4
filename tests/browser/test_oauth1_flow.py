"""X (Twitter) onboarding by OAuth 1.0a, clicked in a real Chromium: confirmation page →
our start obtains a request token → the sandbox OAuth 1.0a consent page (a simulation) →
Approve → callback with ``oauth_token`` + ``oauth_verifier`` → connected. Nothing injected."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # the live server keeps its own SQLite file


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_twitter_oauth1_click_through_connects(live: LiveServer, page: Any) -> None:
    live.end_user("x-approve")
    created = live.connect_session("x-approve", "twitter")
    page.goto(created["connect_url"])
    shot(page, "x-1-confirmation")
    page.get_by_role("button", name=re.compile("Twitter")).click()
    page.get_by_role("button", name="Approve").wait_for()
    assert "/sandbox/oauth/oauth1/twitter/authorize" in page.url
    shot(page, "x-2-consent")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    shot(page, "x-3-back")
    back = _query(page.url)
    assert back["status"] == "connected", back
    assert "oauth_token" not in page.url and "oauth_verifier" not in page.url
    connection = live.api.get(f"/v1/connections/{back['connection_id']}").json()
    assert connection["state"] == "connected", connection
    assert connection["auth_method"] == "oauth1"
    login = connection["setup_tests"][0]
    # Checked for real: a signed request with the handed-over credentials at the sandbox.
    assert (login["title"], login["status"], login["message"]) == ("Validate Login", "PASSED", "")
    session = live.api.get(f"/v1/connect-sessions/{created['id']}").json()
    assert session["status"] == "completed"


def test_twitter_oauth1_deny_returns_with_an_error(live: LiveServer, page: Any) -> None:
    live.end_user("x-deny")
    created = live.connect_session("x-deny", "twitter_ads")
    page.goto(created["connect_url"])
    page.get_by_role("button", name=re.compile("Twitter")).click()
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    back = _query(page.url)
    assert back["status"] == "error" and back["error"] == "access_denied", back
    session = live.api.get(f"/v1/connect-sessions/{created['id']}").json()
    assert session["status"] == "failed"
