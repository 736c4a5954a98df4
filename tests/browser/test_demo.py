"""The sandbox demo (``/sandbox/demo``) clicked through in a real Chromium: a company's own
onboarding UI on the public API — end-user, source search, a credential form rendered from
the source's JSON schema, an OAuth source through the real confirmation and consent pages
(approve and deny), watching state and events, a sync finished by the simulator,
re-authorization and deletion. The page obtains its own demo-scoped key; nothing is
injected."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # never uses the database under test

TIMEOUT_MS = 20_000


def _open_demo(live: LiveServer, page: Any) -> None:
    page.goto(f"{live.base}/sandbox/demo")
    status = page.locator("#key-status")
    status.filter(has_text="Demo key").wait_for(timeout=TIMEOUT_MS)
    assert 'end-users "demo-…" only' in status.inner_text()


def _create_end_user(page: Any, suffix: str, name: str) -> str:
    page.get_by_label("End-user id").fill(suffix)
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create end-user").click()
    external_id = f"demo-{suffix}"
    page.locator("#notice").filter(has_text=f"End-user {external_id} is ready").wait_for(
        timeout=TIMEOUT_MS
    )
    page.wait_for_function(
        "id => document.getElementById('end-user-select').value === id", arg=external_id
    )
    return external_id


def _pick_source(page: Any, query: str, name: str, way: str) -> None:
    """Search, then pick ``name`` offered ``way`` ("credentials" or "sign in")."""
    page.get_by_label("Search sources").fill(query)
    page.locator("#source-list").get_by_role("button", name=f"{name} {way}", exact=True).click()
    page.locator("#source-detail h3", has_text=name).wait_for(timeout=TIMEOUT_MS)


def _wait_state(page: Any, state: str) -> None:
    page.locator("#connection-state", has_text=re.compile(f"^{state}$")).wait_for(
        timeout=TIMEOUT_MS
    )


def _wait_event(page: Any, kind: str) -> None:
    page.locator(f'#events li[data-type="{kind}"]').first.wait_for(timeout=TIMEOUT_MS)


def _back_at_demo(live: LiveServer, page: Any) -> None:
    page.wait_for_url(re.compile(re.escape(f"{live.base}/sandbox/demo") + r"(\?.*)?$"))


def _consent(live: LiveServer, page: Any, button: str, label: str) -> None:
    """The end-user's leg: confirmation page, then the sandbox consent page."""
    page.wait_for_url(re.compile(re.escape(live.base) + "/connect/"))
    page.get_by_role("button", name=re.compile("Salesforce")).wait_for(timeout=TIMEOUT_MS)
    shot(page, f"demo-{label}-confirmation")
    page.get_by_role("button", name=re.compile("Salesforce")).click()
    page.get_by_role("button", name=button).wait_for(timeout=TIMEOUT_MS)
    shot(page, f"demo-{label}-consent")
    page.get_by_role("button", name=button).click()
    _back_at_demo(live, page)


def test_demo_onboards_a_credential_source_and_an_oauth_source(live: LiveServer, page: Any) -> None:
    _open_demo(live, page)
    shot(page, "demo-1-start")
    end_user = _create_end_user(page, "acme", "Acme Corp")

    # A credential source: the form is rendered from GET /v1/sources/postgres.
    _pick_source(page, "postg", "Postgres", "credentials")
    page.get_by_label("Host *").fill("db.acme.example")
    page.get_by_label("Port *").fill("5432")
    page.get_by_label("Database *").fill("app")
    page.get_by_label("User *").fill("fivetran")
    page.get_by_text("Optional settings").click()
    assert page.get_by_label("Password").get_attribute("type") == "password"
    page.get_by_label("Password").fill("demo-s3cret-pw")
    shot(page, "demo-2-postgres-form")
    page.get_by_role("button", name="Create Postgres connection").click()
    _wait_state(page, "connected")
    pg = live.api.get("/v1/connections", params={"end_user": end_user}).json()["items"]
    assert [c["service"] for c in pg] == ["postgres"]
    assert pg[0]["config"]["host"] == "db.acme.example" and pg[0]["config"]["port"] == 5432
    assert pg[0]["credentials_set"] == ["password"]
    assert "demo-s3cret-pw" not in page.content()

    # Sync, and the simulator finishes it; the page sees it through GET /v1/connections/{id}.
    page.get_by_role("button", name="Sync now").click()
    page.locator("#notice", has_text="Sync triggered").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("button", name="Sandbox: finish sync").click()
    page.locator("#connection-last-sync", has_text="succeeded").wait_for(timeout=TIMEOUT_MS)
    _wait_event(page, "connection.sync_succeeded")
    shot(page, "demo-3-postgres-synced")
    fresh = live.api.get(f"/v1/connections/{pg[0]['id']}").json()
    assert fresh["last_sync_succeeded_at"] is not None

    # An OAuth source: a real navigation to connect_url and back to the demo page.
    _pick_source(page, "sales", "Salesforce", "sign in")
    page.get_by_role("button", name="Connect Salesforce").click()
    _consent(live, page, "Approve", "approve")
    page.locator("#notice", has_text="Connected: connection").wait_for(timeout=TIMEOUT_MS)
    _wait_state(page, "connected")
    _wait_event(page, "connection.connected")
    shot(page, "demo-4-salesforce-connected")
    items = live.api.get("/v1/connections", params={"end_user": end_user}).json()["items"]
    sf = next(c for c in items if c["service"] == "salesforce")
    assert sf["state"] == "connected"
    page.locator("#connection-facts", has_text=sf["id"]).wait_for(timeout=TIMEOUT_MS)

    # The source revokes access (the simulator plays it); the webhook makes it broken.
    page.get_by_role("button", name="Sandbox: break it").click()
    _wait_state(page, "broken")
    _wait_event(page, "connection.broken")
    shot(page, "demo-4b-salesforce-broken")

    # Re-authorize the same connection.
    page.get_by_role("button", name="Re-authorize").click()
    _consent(live, page, "Approve", "reauthorize")
    page.locator("#notice", has_text=f"Connected: connection {sf['id']}").wait_for(
        timeout=TIMEOUT_MS
    )
    _wait_state(page, "connected")
    sessions = [
        e
        for e in live.api.get("/v1/events", params={"connection_id": sf["id"]}).json()["items"]
        if e["type"] == "connect_session.completed"
    ]
    assert len(sessions) == 2

    # Delete it.
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Yes, delete this connection").click()
    page.locator("#notice", has_text=f"Connection {sf['id']} deleted").wait_for(timeout=TIMEOUT_MS)
    shot(page, "demo-5-deleted")
    gone = live.api.get(f"/v1/connections/{sf['id']}")
    assert gone.status_code == 404 or gone.json()["state"] == "deleted"
    listed = live.api.get("/v1/connections", params={"end_user": end_user}).json()["items"]
    assert all(c["id"] != sf["id"] or c["state"] == "deleted" for c in listed)


def test_demo_deny_at_consent_comes_back_with_the_error(live: LiveServer, page: Any) -> None:
    _open_demo(live, page)
    end_user = _create_end_user(page, "deny", "Deny Inc")
    _pick_source(page, "salesforce", "Salesforce", "sign in")
    page.get_by_role("button", name="Connect Salesforce").click()
    _consent(live, page, "Deny", "deny")
    page.locator("#notice", has_text="Not connected: access_denied").wait_for(timeout=TIMEOUT_MS)
    assert "session_id" not in page.url  # the page cleaned its address
    items = live.api.get("/v1/connections", params={"end_user": end_user}).json()["items"]
    assert all(c["state"] != "connected" for c in items)


def test_demo_key_sees_only_demo_end_users(live: LiveServer, page: Any) -> None:
    live.end_user("acme-not-demo", "Not a demo end-user")
    _open_demo(live, page)
    page.locator("#end-user-select option").first.wait_for(state="attached")
    options = page.locator("#end-user-select option").all_inner_texts()
    assert not any("acme-not-demo" in o for o in options)
    # A key pasted by the user (the admin key make run prints) sees every end-user.
    page.get_by_text("Use another API key").click()
    page.get_by_label("API key (e.g. the one make run printed)").fill(live.key)
    page.get_by_role("button", name="Use this key").click()
    page.locator("#key-status", has_text="all end-users").wait_for(timeout=TIMEOUT_MS)
    page.locator("#end-user-select option", has_text="acme-not-demo").wait_for(state="attached")
    shot(page, "demo-pasted-key")


def test_demo_fits_a_phone(live: LiveServer, phone: Any) -> None:
    _open_demo(live, phone)
    _create_end_user(phone, "phone", "Phone Co")
    _pick_source(phone, "postgres", "Postgres", "credentials")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    shot(phone, "demo-phone")
