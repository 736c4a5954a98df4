"""Re-authorization revokes the refresh token it replaced (RFC 7009) — attack test.

A leaked old refresh token must not outlive a re-authorization: after the new grant is at
Fivetran and its setup tests passed, the old refresh token is revoked at the provider
(introspection says inactive) and no copy of it is left in the vault.
"""

from __future__ import annotations

from sqlalchemy import func, select

from app.vault.models import VaultSecret
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import FlowHarness, configure_with_first_choices


async def _introspect(harness: FlowHarness, key: str, token: str) -> bool:
    from app.sandbox.oauth import introspect_token

    return await introspect_token(
        harness.app.state.http, harness.app.state.settings.public_base_url, key, token
    )


async def _kept(harness: FlowHarness) -> int:
    async with harness.app.state.sessionmaker() as s:
        stmt = select(func.count()).select_from(VaultSecret)
        stmt = stmt.where(VaultSecret.field == "replaced_refresh_token")
        return int(await s.scalar(stmt) or 0)


async def _reauthorize(harness: FlowHarness, service: str, connection_id: str) -> None:
    again = await harness.session(service, connection_id=connection_id)
    browser = harness.browser()
    callback = await harness.consent(await harness.start(browser, again["connect_url"]))
    r = await browser.get(relative(callback))
    back = query_of(r.headers["location"])
    assert back["status"] == "connected" and back["connection_id"] == connection_id, back


async def test_reauthorization_revokes_the_replaced_refresh_token(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for("hubspot")
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    _, old_refresh = await harness.stored_tokens(connection_id)
    assert old_refresh and await _introspect(harness, "hubspot", old_refresh)

    await _reauthorize(harness, "hubspot", connection_id)

    _, new_refresh = await harness.stored_tokens(connection_id)
    assert new_refresh and new_refresh != old_refresh
    # The attack: replay the old refresh token. The provider says it is dead …
    assert not await _introspect(harness, "hubspot", old_refresh)
    hits = [h for h in await harness.as_token_requests() if h["provider_key"] == "hubspot"]
    before = len(hits)
    r = await harness.client.post(
        "/sandbox/oauth/hubspot/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": old_refresh,
            "client_id": "sandbox-hubspot",
            "client_secret": (
                await harness.app.state.providers.credentials(None, "hubspot")
            ).client_secret.reveal(),
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    assert len(await harness.as_token_requests()) >= before
    # … the new one works, and no copy of the old one is left behind.
    assert await _introspect(harness, "hubspot", new_refresh)
    assert await _kept(harness) == 0
    assert harness.spy.requests.count(("POST", "/sandbox/oauth/hubspot/revoke")) == 1


async def test_no_revocation_where_it_would_end_the_new_grant(harness: FlowHarness) -> None:
    """Google ends the whole authorization on any revocation: the old token is only shred."""
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for("google_analytics_4")
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    # GA4 has an account picker: the connection exists at Fivetran once configured.
    await configure_with_first_choices(harness.client, harness.headers, connection_id)
    await _reauthorize(harness, "google_analytics_4", connection_id)
    assert harness.spy.requests.count(("POST", "/sandbox/oauth/google_analytics_4/revoke")) == 0
    assert await _kept(harness) == 0
