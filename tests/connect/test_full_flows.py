"""End-to-end: every configured provider, through ``/connect/{token}`` → sandbox consent
(auto-approve) → callback → connection ``connected`` in the Fivetran simulator.

The sandbox client secret of every provider contains ``+``, ``%`` and ``:``; the catalog has
providers of both token-endpoint authentication methods (HTTP Basic with RFC 6749 §2.3.1
encoding, and ``client_secret_post``), so both are exercised with such a secret.
"""

from __future__ import annotations

import pytest

from app.providers.catalog_data import hand_written_keys
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import FlowHarness, configure_with_first_choices
from tests.fixtures.providers import example_inputs

# The hand-written providers (each quirk hook, a fresh app per flow); every one of the 142
# services runs end to end in tests/providers/test_all_providers_flow.py on a shared app.
CONFIGURED = hand_written_keys()


async def test_parametrization_covers_every_configured_provider_and_both_auth_methods(
    harness: FlowHarness,
) -> None:
    live = harness.app.state.providers.configured()
    assert set(CONFIGURED) <= {p.key for p in live}
    methods = {p.token_auth_method for p in live}
    assert {"client_secret_basic", "client_secret_post"} <= methods
    for provider in live:
        secret = await harness.app.state.providers.credentials(None, provider.key)
        assert {"+", "%", ":"} <= set(secret.client_secret.reveal())


@pytest.mark.parametrize("provider_key", CONFIGURED)
async def test_full_flow_connects(harness: FlowHarness, provider_key: str) -> None:
    provider = harness.app.state.providers.get(provider_key)
    await harness.end_user()
    created = await harness.session(provider.fivetran_service, config=example_inputs(provider))
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    callback = await harness.consent(authorize_url)
    params = query_of(callback)
    assert provider.code_param in params
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    back = query_of(r.headers["location"])
    assert back["session_id"] == created["id"]
    connection_id = back["connection_id"]
    if provider.spec.picker is not None:  # account pickers: the choice comes first
        assert back["status"] == "needs_configuration", back
        await configure_with_first_choices(harness.client, harness.headers, connection_id)
    else:
        assert back["status"] == "connected", back

    # Exactly what the flow exchanged: one code exchange (plus Facebook's long-lived swap).
    hits = [h for h in await harness.as_token_requests() if h["provider_key"] == provider_key]
    assert hits and hits[0]["grant_type"] == "authorization_code"
    assert len(harness.spy.token_requests(provider_key)) == len(hits)

    status = await harness.session_status(created["id"])
    assert status["status"] == "completed" and status["connection_id"] == connection_id
    conn = await harness.client.get(f"/v1/connections/{connection_id}", headers=harness.headers)
    assert conn.status_code == 200, conn.text
    body = conn.json()
    assert body["state"] == "connected"
    fivetran_id = body["fivetran_connection_id"]
    remote = await harness.client.get(
        f"/sandbox/fivetran/v1/connections/{fivetran_id}", auth=("sandbox_key", "sandbox_secret")
    )
    assert remote.status_code == 200, remote.text
    assert remote.json()["data"]["service"] == provider.fivetran_service

    # Quirks went through the provider hooks.
    from app.connect.models import OAuthGrant
    from app.connections.models import Connection

    async with harness.app.state.sessionmaker() as s:
        row = await s.get(Connection, connection_id)
        assert row is not None
        metadata = dict(row.oauth_metadata or {})
        grant = await s.get(OAuthGrant, connection_id)
    # Grant metadata in one place: the grant row, not copied into the connection.
    assert grant is not None and grant.provider_key == provider_key
    assert not any(key.startswith("_") for key in metadata), metadata
    if provider_key == "quickbooks":
        assert metadata.get("realm_id") == params["realmId"]
    if provider_key == "shopify":
        assert "hmac" in params
        assert metadata.get("shop") == params["shop"]
    if provider_key == "tiktok_ads":
        assert "auth_code" in params and "code" not in params

    # Events: the session completed.
    from sqlalchemy import select

    from app.events.models import Event

    async with harness.app.state.sessionmaker() as s:
        kinds = (await s.scalars(select(Event.kind))).all()
    assert "connect_session.completed" in kinds


async def test_reauthorization_of_an_existing_connection(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _created = await harness.callback_url_for("hubspot")
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    old_access, _ = await harness.stored_tokens(connection_id)
    again = await harness.session("hubspot", connection_id=connection_id)
    status = await harness.session_status(again["id"])
    assert status["connection_id"] == connection_id
    browser_2 = harness.browser()
    callback_2 = await harness.consent(await harness.start(browser_2, again["connect_url"]))
    r2 = await browser_2.get(relative(callback_2))
    back = query_of(r2.headers["location"])
    assert back["status"] == "connected" and back["connection_id"] == connection_id
    new_access, _ = await harness.stored_tokens(connection_id)
    assert new_access != old_access
    assert (await harness.rows())["fivetran_connections"] == 1
    # Foreign or mismatching connection ids are refused.
    r = await harness.create_session("asana", connection_id=connection_id)
    assert r.status_code == 422 and r.json()["field"] == "service"
    r = await harness.create_session("hubspot", connection_id="con_nope")
    assert r.status_code == 404


async def test_denied_consent_fails_the_session_and_emits_an_event(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session("hubspot")
    browser = harness.browser()
    denied = await harness.consent(
        await harness.start(browser, created["connect_url"]), login_hint="deny"
    )
    r = await browser.get(relative(denied))
    assert query_of(r.headers["location"])["error"] == "access_denied"
    from sqlalchemy import select

    from app.events.models import Event

    async with harness.app.state.sessionmaker() as s:
        events = (await s.scalars(select(Event))).all()
    failed = [e for e in events if e.kind == "connect_session.failed"]
    assert len(failed) == 1
    status = await harness.session_status(created["id"])
    assert status == {**status, "status": "failed", "error": "access_denied"}


async def test_the_callback_reads_the_app_credentials_once(
    harness: FlowHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signature check, the code exchange and the Fivetran auth values share one read of
    the app's credentials (a vault read and decryption when the secret lives in the vault);
    the auth values come from the fresh tokens in the callback, not from a second lookup."""
    registry = harness.app.state.providers
    provider = registry.get("salesforce")
    await harness.end_user()
    created = await harness.session(provider.fivetran_service, config=example_inputs(provider))
    browser = harness.browser()
    callback = await harness.consent(await harness.start(browser, created["connect_url"]))

    reads: list[str] = []
    real = type(registry).credentials

    async def counted(self: object, session: object, provider_key: str) -> object:
        reads.append(provider_key)
        return await real(self, session, provider_key)  # type: ignore[arg-type]

    monkeypatch.setattr(type(registry), "credentials", counted)
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    assert query_of(r.headers["location"])["status"] == "connected"
    assert reads == ["salesforce"]
