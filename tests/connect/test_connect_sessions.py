"""``POST/GET /v1/connect-sessions``: validation, restriction, idempotency, nothing written on
errors, and the confirmation page."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from app.connect.models import ConnectSession
from app.db import utcnow
from tests.fixtures.connect import RETURN_TO, FlowHarness

PROVIDER = "hubspot"


async def test_create_returns_connect_url_and_pending_status(harness: FlowHarness) -> None:
    await harness.end_user()
    r = await harness.create_session(PROVIDER)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "connect_url", "expires_at", "status"}
    assert body["status"] == "pending"
    assert body["connect_url"].startswith("http://127.0.0.1:8000/connect/")
    token = body["connect_url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits
    # Only the token's hash is stored.
    async with harness.app.state.sessionmaker() as s:
        row = await s.get(ConnectSession, body["id"])
        assert row is not None and token not in row.token_hash
        assert row.token_expires_at - row.created_at <= timedelta(minutes=5)
    status = await harness.session_status(body["id"])
    assert status["status"] == "pending"
    assert status["connection_id"]
    assert status["error"] is None


async def test_unknown_and_foreign_end_users_are_404_and_write_nothing(
    harness: FlowHarness,
) -> None:
    await harness.end_user("acme")
    await harness.end_user("other-co")
    before = await harness.rows()
    r = await harness.create_session(PROVIDER, end_user="nobody")
    assert r.status_code == 404 and r.json()["code"] == "end_user_not_found"
    from app.callers.service import create_api_key

    async with harness.app.state.sessionmaker() as s, s.begin():
        _, key = await create_api_key(s, name="r", scopes=["write"], end_user_prefix="acme")
    restricted = {"Authorization": f"Bearer {key}"}
    r = await harness.create_session(PROVIDER, end_user="other-co", headers=restricted)
    assert r.status_code == 404 and r.json()["code"] == "end_user_not_found"
    assert await harness.rows() == before
    # A session of another end-user is invisible to the restricted key.
    created = await harness.session(PROVIDER, end_user="other-co")
    r = await harness.client.get(f"/v1/connect-sessions/{created['id']}", headers=restricted)
    assert r.status_code == 404
    r = await harness.client.get("/v1/connect-sessions/cs_nope", headers=harness.headers)
    assert r.status_code == 404


async def test_unknown_service_and_bad_config_are_rejected_without_writes(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    before = await harness.rows()
    r = await harness.create_session("no_such_service")
    assert r.status_code == 404, r.text
    r = await harness.create_session("shopify", config={"shop": "evil.com/x"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "config.shop"
    r = await harness.create_session("shopify", config={})
    assert r.status_code == 422 and r.json()["field"] == "config.shop"
    r = await harness.create_session("salesforce", config={"hostname": "acme.lightning.force.com"})
    assert r.status_code == 422 and r.json()["field"] == "config.hostname"
    assert await harness.rows() == before


async def test_read_scope_cannot_create(harness: FlowHarness) -> None:
    from app.callers.service import create_api_key

    await harness.end_user()
    async with harness.app.state.sessionmaker() as s, s.begin():
        _, key = await create_api_key(s, name="ro", scopes=["read"])
    r = await harness.create_session(PROVIDER, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


async def test_idempotency_key_replays_and_conflicts(harness: FlowHarness) -> None:
    await harness.end_user()
    headers = {**harness.headers, "Idempotency-Key": "k-1"}
    first = await harness.create_session(PROVIDER, headers=headers)
    assert first.status_code == 201
    again = await harness.create_session(PROVIDER, headers=headers)
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert await harness.rows() == {**(await harness.rows())}
    assert (await harness.rows())["sessions"] == 1
    # The replay re-issued the start token: the first URL is dead, the new one works.
    old, new = first.json()["connect_url"], again.json()["connect_url"]
    assert old != new
    browser = harness.browser()
    assert (await browser.post(old)).status_code == 400
    assert (await browser.post(new)).status_code == 303
    conflict = await harness.create_session(PROVIDER, headers=headers, return_to=RETURN_TO + "&x=1")
    assert conflict.status_code == 409
    # Once started, a replay cannot hand out a new start link.
    replay = await harness.create_session(PROVIDER, headers=headers)
    assert replay.status_code == 409


async def test_confirmation_page_names_end_user_and_source_and_does_not_consume(
    harness: FlowHarness,
) -> None:
    await harness.end_user("acme", name="Acme <Corp>")
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    page = await browser.get(created["connect_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Acme &lt;Corp&gt;" in page.text and "<Corp>" not in page.text
    assert "HubSpot" in page.text
    assert 'method="post"' in page.text
    assert "location" not in page.headers and "http-equiv" not in page.text.lower()
    assert page.headers["x-frame-options"] == "DENY"
    # same-origin: the form POST carries a real Origin; nothing leaves cross-origin.
    assert page.headers["referrer-policy"] == "same-origin"
    # The form POSTs from our own origin; that is allow-listed and consumes the token.
    again = await browser.get(created["connect_url"])
    assert again.status_code == 200
    started = await browser.post(created["connect_url"], origin="http://127.0.0.1:8000")
    assert started.status_code == 303
    gone = await browser.get(created["connect_url"])
    assert gone.status_code == 400


async def test_expired_sessions_report_expired(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    past = utcnow() - timedelta(seconds=1)
    async with harness.app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(ConnectSession)
            .where(ConnectSession.id == created["id"])
            .values(token_expires_at=past, expires_at=past)
        )
    assert (await harness.session_status(created["id"]))["status"] == "expired"
    r = await harness.browser().post(created["connect_url"])
    assert r.status_code == 400
    assert "expired or was already used" in r.text


async def test_expiry_sweep_closes_abandoned_sessions(harness: FlowHarness) -> None:
    from sqlalchemy import select

    from app.connect.models import OAuthFlow
    from app.connect.startup import sweep_once
    from app.connections.models import Connection
    from app.events.models import Event
    from app.vault.models import VaultSecret

    await harness.end_user()
    never_started = await harness.session(PROVIDER)
    abandoned = await harness.session(PROVIDER)  # started, the browser never came back
    await harness.start(harness.browser(), abandoned["connect_url"])
    live = await harness.session(PROVIDER)
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 1
    assert await sweep_once(harness.app) == 0  # nothing is due yet
    past = utcnow() - timedelta(seconds=1)
    async with harness.app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(ConnectSession)
            .where(ConnectSession.id.in_([never_started["id"], abandoned["id"]]))
            .values(expires_at=past, token_expires_at=past)
        )
        await s.execute(update(OAuthFlow).values(expires_at=past))
    assert await sweep_once(harness.app) == 2
    for created in (never_started, abandoned):
        status = await harness.session_status(created["id"])
        assert status["status"] == "expired" and status["error"] == "expired"
        async with harness.app.state.sessionmaker() as s:
            conn = await s.get(Connection, status["connection_id"])
            assert conn is not None and conn.state == "setup_failed"
    assert (await harness.session_status(live["id"]))["status"] == "pending"
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0
    async with harness.app.state.sessionmaker() as s:
        kinds = (await s.scalars(select(Event.kind))).all()
    assert kinds.count("connect_session.failed") == 2
    assert await sweep_once(harness.app) == 0
