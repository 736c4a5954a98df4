"""Account pickers in the sandbox demo, clicked through in a real Chromium: Google Ads and
Facebook Ads through the confirmation and consent pages, back to the demo with
``status=needs_configuration``, the accounts listed by the (simulated) provider, the choice
submitted, the connection ``connected`` with the chosen accounts at the Fivetran simulator;
then the selection changed on the connected connection. Nothing is injected."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_demo import (
    TIMEOUT_MS,
    _back_at_demo,
    _create_end_user,
    _open_demo,
    _wait_event,
    _wait_state,
)
from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # the live server keeps its own SQLite file


def _consent(live: LiveServer, page: Any, source: str, label: str) -> None:
    page.wait_for_url(re.compile(re.escape(live.base) + "/connect/"))
    button = page.get_by_role("button", name=re.compile(re.escape(source)))
    button.wait_for(timeout=TIMEOUT_MS)
    button.click()
    page.get_by_role("button", name="Approve").wait_for(timeout=TIMEOUT_MS)
    shot(page, f"demo-picker-{label}-consent")
    page.get_by_role("button", name="Approve").click()
    _back_at_demo(live, page)


@pytest.mark.parametrize(
    ("service", "query", "name"),
    [("google_ads", "google ads", "Google Ads"), ("facebook_ads", "facebook ads", "Facebook Ads")],
)
def test_demo_picks_accounts_after_consent(
    live: LiveServer, page: Any, service: str, query: str, name: str
) -> None:
    _open_demo(live, page)
    end_user = _create_end_user(page, f"pick-{service.replace('_', '-')}", "Picker Inc")
    page.get_by_label("Search sources").fill(query)
    page.locator("#source-list").get_by_role(
        "button", name=re.compile(rf"^{re.escape(name)}.* sign in$")
    ).first.click()
    page.locator("#source-detail h3", has_text=name).wait_for(timeout=TIMEOUT_MS)
    page.locator("#source-detail").get_by_role(
        "button", name=re.compile(rf"^Connect {re.escape(name)}")
    ).click()
    _consent(live, page, name, service)
    page.locator("#notice", has_text="choose what to sync").wait_for(timeout=TIMEOUT_MS)
    assert "session_id" not in page.url
    _wait_state(page, "needs_configuration")
    _wait_event(page, "connection.needs_configuration")

    # The accounts the (simulated) provider lists, for the end-user to choose from.
    picker = page.locator("#picker")
    picker.wait_for(timeout=TIMEOUT_MS)
    boxes = picker.get_by_role("checkbox")
    boxes.first.wait_for(timeout=TIMEOUT_MS)
    assert boxes.count() == 3
    shot(page, f"demo-picker-{service}-choices")
    items = live.api.get("/v1/connections", params={"end_user": end_user}).json()["items"]
    (conn,) = [c for c in items if c["service"] == service]
    assert conn["state"] == "needs_configuration" and conn["fivetran_connection_id"] is None
    options = live.api.get(f"/v1/connections/{conn['id']}/options").json()
    values = [o["value"] for o in options["options"]["accounts"]]
    boxes.nth(0).check()
    boxes.nth(2).check()
    picker.get_by_role("button", name="Connect these").click()
    _wait_state(page, "connected")
    _wait_event(page, "connection.connected")
    shot(page, f"demo-picker-{service}-connected")
    fresh = live.api.get(f"/v1/connections/{conn['id']}").json()
    assert fresh["state"] == "connected"
    remote = live.api.get(
        f"/sandbox/fivetran/v1/connections/{fresh['fivetran_connection_id']}",
        auth=("sandbox_key", "sandbox_secret"),
    ).json()["data"]
    assert remote["config"]["accounts"] == [values[0], values[2]]
    assert remote["config"]["sync_mode"] == "SpecificAccounts"

    # Change the selection of the connected connection.
    page.get_by_role("button", name="Change accounts…").click()
    picker.wait_for(timeout=TIMEOUT_MS)
    boxes = picker.get_by_role("checkbox")
    boxes.first.wait_for(timeout=TIMEOUT_MS)
    assert boxes.nth(0).is_checked() and boxes.nth(2).is_checked()
    boxes.nth(0).uncheck()
    picker.get_by_role("button", name="Save selection").click()
    page.locator("#notice", has_text="Saved").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => !document.getElementById('picker')", timeout=TIMEOUT_MS)
    remote = live.api.get(
        f"/sandbox/fivetran/v1/connections/{fresh['fivetran_connection_id']}",
        auth=("sandbox_key", "sandbox_secret"),
    ).json()["data"]
    assert remote["config"]["accounts"] == [values[2]]
