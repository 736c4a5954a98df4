"""Re-authorization as another provider account, clicked in a real Chromium.

The end-user connects Salesforce as the sandbox's default account, then reconnects and picks
another account on the sandbox consent page ("Sign in as"): the browser comes back to the
company's ``return_to`` with ``status=error&error=account_mismatch``, the connection keeps its
account, and neither account's id nor label reaches the server log.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # the live server keeps its own SQLite file


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _click_through(live: LiveServer, page: Any, connect_url: str, account: str) -> dict[str, str]:
    page.goto(connect_url)
    page.get_by_role("button", name=re.compile("Salesforce")).click()
    page.get_by_label("Sign in as (sandbox account)").select_option(account)
    shot(page, f"identity-consent-{account}")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(re.escape(live.return_to) + r"\?.*"))
    shot(page, f"identity-back-{account}")
    return _query(page.url)


def test_reauthorization_as_another_account_comes_back_with_account_mismatch(
    live: LiveServer, page: Any
) -> None:
    live.end_user("identity-reauth")
    created = live.connect_session("identity-reauth", "salesforce")
    back = _click_through(live, page, created["connect_url"], "sandbox-user")
    assert back["status"] == "connected", back
    connection_id = back["connection_id"]
    before = live.api.get(f"/v1/connections/{connection_id}").json()
    assert before["account"]["id"].startswith("00D")
    assert before["account"]["label"] == "https://sandbox-user.my.salesforce.com"

    r = live.api.post(
        f"/v1/connections/{connection_id}/reauthorize", json={"return_to": live.return_to}
    )
    assert r.status_code in (200, 201), r.text
    again = r.json()
    back = _click_through(live, page, again["connect_url"], "second-account")

    assert back["status"] == "error" and back["error"] == "account_mismatch", back
    assert "connection_id" not in back
    # The company's page received exactly that (what its own error message is built from).
    assert "error=account_mismatch" in page.locator("#q").inner_text()
    session = live.api.get(f"/v1/connect-sessions/{again['id']}").json()
    assert session["status"] == "failed" and session["error"] == "account_mismatch"
    after = live.api.get(f"/v1/connections/{connection_id}").json()
    assert after["account"] == before["account"] and after["state"] == before["state"]
    assert after["updated_at"] == before["updated_at"]
    log = live.server_log()
    assert before["account"]["id"] not in log
    assert "sandbox-user.my.salesforce.com" not in log
    assert "second-account.my.salesforce.com" not in log
