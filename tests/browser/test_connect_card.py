"""A card-only service (xero), clicked through in a real Chromium: the caller creates the
connection and asks for Fivetran's Connect Card; the end-user fills the (simulated) card,
Save & Test; Fivetran's redirect brings the browser to our return endpoint, which sends it on
to the company's ``return_to`` — and the connection is ``connected``. No header is injected:
the browser follows the real redirects of a real ``pbf-headless serve --sandbox``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # the live server keeps its own SQLite file


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _card_for(live: LiveServer, end_user: str, service: str) -> tuple[dict[str, Any], str]:
    live.end_user(end_user)
    r = live.api.post(
        "/v1/connections", json={"end_user": end_user, "service": service, "config": {}}
    )
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "authorizing" and conn["auth_method"] == "connect_card"
    r = live.api.post(
        f"/v1/connections/{conn['id']}/connect-card", json={"return_to": live.return_to}
    )
    assert r.status_code == 201, r.text
    return conn, r.json()["connect_card_url"]


def test_xero_through_the_card_ends_connected(live: LiveServer, page: Any) -> None:
    conn, card_url = _card_for(live, "card-xero", "xero")
    assert card_url.startswith(live.base + "/sandbox/fivetran/connect-card/setup?")
    page.goto(card_url)
    assert page.get_by_text("Simulated Fivetran Connect Card").is_visible()
    page.get_by_label("Sign-in account (simulated)").fill("books@acme.example")
    shot(page, "card-xero-1-card")
    page.get_by_role("button", name="Save & Test").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    shot(page, "card-xero-2-back")
    back = _query(page.url)
    assert back == {"status": "connected", "connection_id": conn["id"]}, back
    got = live.api.get(f"/v1/connections/{conn['id']}").json()
    assert got["state"] == "connected" and got["paused"] is False
    # The return link works once: the browser's back-and-reload shows our error page.
    page.go_back()
    page.goto(
        live.base
        + urlsplit(parse_qs(urlsplit(card_url).query)["redirect_uri"][0]).path
        + f"?id={got['fivetran_connection_id']}"
    )
    assert page.get_by_role("heading", name="This link cannot be used").is_visible()


def test_failed_card_setup_returns_with_an_error(live: LiveServer, page: Any) -> None:
    conn, card_url = _card_for(live, "card-slack", "slack")
    page.goto(card_url)
    page.get_by_label("Sign-in account (simulated)").fill("invalid")
    page.get_by_role("button", name="Save & Test").click()
    assert page.get_by_role("alert").is_visible()
    page.get_by_role("link", name="Leave setup").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    back = _query(page.url)
    assert back["status"] == "error" and back["error"] == "setup_failed", back
    assert live.api.get(f"/v1/connections/{conn['id']}").json()["state"] == "setup_failed"
