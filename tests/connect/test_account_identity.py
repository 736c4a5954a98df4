"""The connected account's identity — attack tests (issue 12, part 3).

Each test drives the real app over ASGI with the sandbox authorization server as the provider
and chooses the sandbox account the consent logs in as (``login_hint=auto:<account>``):

* a connection records its provider account (``account: {id, label}`` in reads);
* re-authorizing as **another account** is refused: the session fails ``account_mismatch``,
  nothing is stored, Fivetran is not called, the new grant is revoked at the provider, the
  connection is unchanged and no token, id or label reaches a log;
* connecting an account the end-user **already connected** for the service: refused by
  default (no Fivetran create, tokens revoked, the redirect and the session name the
  connection holding it), ``flag`` and ``return_existing`` modes;
* an identity call that fails fails closed (``identity_unavailable``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from app.config import Settings
from app.connections.models import Connection
from app.events.models import Event
from app.sandbox.oauth.accounts import email
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import APP_ORIGIN, FlowHarness, configure_with_first_choices, log_text
from tests.fixtures.providers import example_inputs

OTHER = "second-account"


async def connect(
    harness: FlowHarness,
    service: str,
    *,
    account: str = "sandbox-user",
    connection_id: str | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """One connect flow consenting as ``account``: (redirect query, session)."""
    provider = harness.app.state.providers.for_service(service)
    body: dict[str, Any] = {}
    if connection_id is not None:
        body["connection_id"] = connection_id
    else:
        body["config"] = example_inputs(provider)
    created = await harness.session(service, **body)
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    callback = await harness.consent(authorize_url, login_hint=f"auto:{account}")
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    return query_of(r.headers["location"]), created


async def read(harness: FlowHarness, connection_id: str) -> dict[str, Any]:
    r = await harness.client.get(f"/v1/connections/{connection_id}", headers=harness.headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def fivetran_requests(harness: FlowHarness) -> list[dict[str, Any]]:
    r = await harness.client.get("/sandbox/fivetran/_control/requests")
    assert r.status_code == 200
    return list((r.json().get("data") or {}).get("items") or [])


async def events(harness: FlowHarness, kind: str) -> list[dict[str, Any]]:
    async with harness.app.state.sessionmaker() as s:
        rows = (await s.scalars(select(Event).where(Event.kind == kind))).all()
    return [dict(e.data) for e in rows]


def grants_of(harness: FlowHarness, provider_key: str, account: str) -> list[str]:
    """Sandbox grant ids the account consented to for this provider."""
    store = harness.app.state.sandbox_oauth.store
    client_id = f"sandbox-{provider_key}"
    return [
        gid
        for gid, g in store.grants.items()
        if g.user.username == account and g.client_id == client_id
    ]


def tokens_of(harness: FlowHarness, grant_ids: list[str]) -> list[str]:
    store = harness.app.state.sandbox_oauth.store
    values = [t for t, v in store.access_tokens.items() if v.grant_id in grant_ids]
    values += [t for t, v in store.refresh_tokens.items() if v.grant_id in grant_ids]
    return values


async def identity_harness(
    make_flow_harness: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    **connect: str,
) -> FlowHarness:
    settings = settings_factory(api={"allowed_origins": [APP_ORIGIN]}, connect=connect)
    return await make_flow_harness(settings)  # type: ignore[no-any-return]


# --- the account is recorded ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "label"),
    [
        ("hubspot", None),  # identity call (account info, bearer token)
        ("salesforce", "https://sandbox-user.my.salesforce.com"),  # token response id URL
        ("google_analytics_4", email("sandbox-user")),  # id_token claims
        ("quickbooks", None),  # callback realmId
        ("intercom", "Sandbox User workspace"),  # identity call, app.id_code
    ],
)
async def test_connection_records_the_provider_account(
    harness: FlowHarness, service: str, label: str | None
) -> None:
    await harness.end_user()
    back, _ = await connect(harness, service)
    if back["status"] == "needs_configuration":  # account pickers (GA4 …) choose first
        await configure_with_first_choices(harness.client, harness.headers, back["connection_id"])
    else:
        assert back["status"] == "connected", back
    body = await read(harness, back["connection_id"])
    assert body["state"] == "connected", body
    account = body["account"]
    assert account is not None and account["id"]
    if label is not None:
        assert account["label"] == label
    if service == "salesforce":
        assert account["id"].startswith("00D") and len(account["id"]) == 18
    if service == "quickbooks":
        assert account["label"] == f"QuickBooks company {account['id']}"
    if service == "hubspot":
        assert account["label"] == f"HubSpot portal {account['id']}"
    assert body["duplicate_of"] is None
    # Another account of the same provider is another identity.
    await harness.end_user("globex", "Globex")
    r = await harness.create_session(service, end_user="globex", config={})
    assert r.status_code == 201, r.text


async def test_connection_reads_list_the_account(harness: FlowHarness) -> None:
    await harness.end_user()
    back, _ = await connect(harness, "hubspot")
    r = await harness.client.get("/v1/connections?end_user=acme", headers=harness.headers)
    [item] = r.json()["items"]
    assert item["id"] == back["connection_id"] and item["account"]["id"]
    r = await harness.client.post(
        "/v1/connections",
        json={
            "end_user": "acme",
            "service": "postgres",
            "config": {
                "host": "db.example.com",
                "port": 5432,
                "database": "app",
                "user": "fivetran",
                "password": "s3cret",
            },
        },
        headers=harness.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["account"] is None  # credential sources have no provider account


# --- re-authorization with another account ---------------------------------------------------


@pytest.mark.parametrize("service", ["hubspot", "salesforce", "google_analytics_4", "quickbooks"])
async def test_reauthorization_with_another_account_is_refused(
    harness: FlowHarness, all_logs: pytest.LogCaptureFixture, service: str
) -> None:
    await harness.end_user()
    back, _ = await connect(harness, service)
    connection_id = back["connection_id"]
    before = await read(harness, connection_id)
    tokens_before = await harness.stored_tokens(connection_id)
    rows_before = await harness.rows()
    requests_before = len(await fivetran_requests(harness))
    provider_key = harness.app.state.providers.for_service(service).key

    # The attack: the end-user (or someone in their browser) consents as another account.
    back2, created = await connect(harness, service, account=OTHER, connection_id=connection_id)

    assert back2["status"] == "error" and back2["error"] == "account_mismatch", back2
    assert "connection_id" not in back2
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "account_mismatch"
    # Nothing stored, nothing sent to Fivetran, the connection unchanged.
    assert await harness.stored_tokens(connection_id) == tokens_before
    after = await read(harness, connection_id)
    assert after == before
    rows_after = await harness.rows()
    assert rows_after["connection_secrets"] == rows_before["connection_secrets"]
    assert rows_after["connections"] == rows_before["connections"]
    assert len(await fivetran_requests(harness)) == requests_before
    # The other account's new grant is dead at the provider.
    other = grants_of(harness, provider_key, OTHER)
    assert other and not any(harness.app.state.sandbox_oauth.store.grant_active(g) for g in other)
    # The original account's grant is untouched.
    mine = grants_of(harness, provider_key, "sandbox-user")
    assert any(harness.app.state.sandbox_oauth.store.grant_active(g) for g in mine)
    [event] = await events(harness, "connection.account_mismatch")
    assert event["action"] == "refused" and event["revoked_at_provider"] is True
    assert (await events(harness, "connect_session.failed"))[-1]["error"] == "account_mismatch"
    # No token, account id or label of either account in any log line.
    text = log_text(all_logs)
    for value in tokens_of(harness, other + mine):
        assert value not in text
    assert before["account"]["id"] not in text
    if before["account"]["label"]:
        assert before["account"]["label"] not in text


async def test_reauthorization_with_the_same_account_still_works(harness: FlowHarness) -> None:
    await harness.end_user()
    back, _ = await connect(harness, "hubspot")
    first = await read(harness, back["connection_id"])
    again, _ = await connect(harness, "hubspot", connection_id=back["connection_id"])
    assert again["status"] == "connected" and again["connection_id"] == back["connection_id"]
    assert (await read(harness, back["connection_id"]))["account"] == first["account"]


async def test_reauthorization_with_another_account_when_allowed(
    make_flow_harness: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    harness = await identity_harness(
        make_flow_harness, settings_factory, reauth_other_account="allow"
    )
    await harness.end_user()
    back, _ = await connect(harness, "hubspot")
    first = await read(harness, back["connection_id"])
    again, _ = await connect(harness, "hubspot", account=OTHER, connection_id=back["connection_id"])
    assert again["status"] == "connected", again
    after = await read(harness, back["connection_id"])
    assert after["account"]["id"] != first["account"]["id"]
    assert after["account"]["label"] == f"HubSpot portal {after['account']['id']}"
    [event] = await events(harness, "connection.account_mismatch")
    assert event["action"] == "allowed"


# --- an account the end-user already connected -------------------------------------------------


async def test_duplicate_account_is_refused_by_default(harness: FlowHarness) -> None:
    await harness.end_user()
    first, _ = await connect(harness, "hubspot")
    rows_before = await harness.rows()
    creates_before = len(await harness.fivetran_connections())

    back, created = await connect(harness, "hubspot")

    assert back["status"] == "error" and back["error"] == "account_already_connected", back
    assert back["existing_connection_id"] == first["connection_id"]
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "account_already_connected"
    assert status["existing_connection_id"] == first["connection_id"]
    assert len(await harness.fivetran_connections()) == creates_before  # no Fivetran create
    rows = await harness.rows()
    assert rows["connection_secrets"] == rows_before["connection_secrets"]
    assert rows["grants"] == rows_before["grants"]
    # The reserved connection failed; its tokens were revoked (HubSpot: per-token revocation).
    reserved = status["connection_id"]
    assert reserved != first["connection_id"]
    assert (await read(harness, reserved))["state"] == "setup_failed"
    grants = grants_of(harness, "hubspot", "sandbox-user")
    active = [g for g in grants if harness.app.state.sandbox_oauth.store.grant_active(g)]
    assert len(grants) == 2 and len(active) == 1  # the first connection's grant lives on
    [event] = await events(harness, "connection.duplicate_account")
    assert event["mode"] == "refuse" and event["existing_connection_id"] == first["connection_id"]
    # Another account for the same service is no duplicate.
    other, _ = await connect(harness, "hubspot", account=OTHER)
    assert other["status"] == "connected", other


async def test_a_deleted_connection_does_not_hold_its_account(harness: FlowHarness) -> None:
    await harness.end_user()
    first, _ = await connect(harness, "hubspot")
    r = await harness.client.delete(
        f"/v1/connections/{first['connection_id']}", headers=harness.headers
    )
    assert r.status_code in (200, 202, 204), r.text
    again, _ = await connect(harness, "hubspot")
    assert again["status"] == "connected", again


async def test_duplicate_account_flagged(
    make_flow_harness: Callable[..., Any], settings_factory: Callable[..., Settings]
) -> None:
    harness = await identity_harness(make_flow_harness, settings_factory, duplicate_account="flag")
    await harness.end_user()
    first, _ = await connect(harness, "hubspot")
    second, _ = await connect(harness, "hubspot")
    assert second["status"] == "connected", second
    assert second["connection_id"] != first["connection_id"]
    body = await read(harness, second["connection_id"])
    assert body["duplicate_of"] == first["connection_id"]
    assert body["account"] == (await read(harness, first["connection_id"]))["account"]
    assert len(await harness.fivetran_connections()) == 2
    [event] = await events(harness, "connection.duplicate_account")
    assert event["mode"] == "flag" and event["revoked_at_provider"] is False


@pytest.mark.parametrize(("service", "revoked"), [("hubspot", True), ("google_ads", False)])
async def test_duplicate_account_returns_the_existing_connection(
    make_flow_harness: Callable[..., Any],
    settings_factory: Callable[..., Settings],
    service: str,
    revoked: bool,
) -> None:
    harness = await identity_harness(
        make_flow_harness, settings_factory, duplicate_account="return_existing"
    )
    await harness.end_user()
    first, _ = await connect(harness, service)
    if first["status"] == "needs_configuration":  # google_ads: the account picker first
        await configure_with_first_choices(harness.client, harness.headers, first["connection_id"])
    tokens = await harness.stored_tokens(first["connection_id"])
    back, created = await connect(harness, service)
    assert back["status"] == "connected" and back["connection_id"] == first["connection_id"]
    status = await harness.session_status(created["id"])
    assert status["status"] == "completed"
    assert status["connection_id"] == first["connection_id"]
    assert status["existing_connection_id"] == first["connection_id"]
    assert len(await harness.fivetran_connections()) == 1  # nothing paid twice
    assert await harness.stored_tokens(first["connection_id"]) == tokens
    async with harness.app.state.sessionmaker() as s:
        conns = (await s.scalars(select(Connection))).all()
    states = sorted(c.state for c in conns)
    assert states == ["connected", "deleted"]  # the reserved placeholder is gone
    key = harness.app.state.providers.for_service(service).key
    grants = grants_of(harness, key, "sandbox-user")
    active = [g for g in grants if harness.app.state.sandbox_oauth.store.grant_active(g)]
    # Google: revoking any token ends the whole authorization, so the duplicate's tokens
    # are discarded without a revocation call; HubSpot revokes them.
    assert len(active) == (1 if revoked else 2)
    [event] = await events(harness, "connection.duplicate_account")
    assert event["mode"] == "return_existing" and event["revoked_at_provider"] is revoked


# --- the identity source fails -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["identity_500", "identity_without_id"])
async def test_identity_call_failure_fails_closed(harness: FlowHarness, kind: str) -> None:
    await harness.end_user()
    await harness.misbehave("hubspot", kind)
    rows_before = await harness.rows()
    back, created = await connect(harness, "hubspot")
    assert back["status"] == "error" and back["error"] == "identity_unavailable", back
    status = await harness.session_status(created["id"])
    assert status["error"] == "identity_unavailable"
    rows = await harness.rows()
    assert rows["connection_secrets"] == rows_before["connection_secrets"] == 0
    assert rows["fivetran_connections"] == 0
    assert (await read(harness, status["connection_id"]))["account"] is None
    # The unidentified grant is revoked (HubSpot revokes per token).
    grants = grants_of(harness, "hubspot", "sandbox-user")
    assert grants and not any(harness.app.state.sandbox_oauth.store.grant_active(g) for g in grants)


async def test_sandbox_control_chooses_the_consenting_account(harness: FlowHarness) -> None:
    await harness.end_user()
    r = await harness.client.post(
        "/sandbox/oauth/_control/account", json={"provider_key": "hubspot", "account": OTHER}
    )
    assert r.status_code == 200, r.text
    back, _ = await connect(harness, "hubspot", account="")  # plain login_hint=auto
    assert back["status"] == "connected", back
    other, _ = await connect(harness, "hubspot", account=OTHER)
    assert other["error"] == "account_already_connected"  # the same account, twice
    r = await harness.client.post(
        "/sandbox/oauth/_control/account", json={"provider_key": "*", "account": "Bad Name"}
    )
    assert r.status_code == 422


async def test_two_concurrent_consents_of_one_account_make_one_connection(
    harness: FlowHarness,
) -> None:
    # The race: two flows of the same end-user consent as the same account and their
    # callbacks arrive together. Both must not see "not connected yet": one connects, the
    # other is refused as a duplicate, and Fivetran gets exactly one create.
    await harness.end_user()
    pending = []
    for _ in range(2):
        created = await harness.session("hubspot", config={})
        browser = harness.browser()
        authorize_url = await harness.start(browser, created["connect_url"])
        callback = await harness.consent(authorize_url, login_hint="auto:sandbox-user")
        pending.append((browser, relative(callback)))
    answers = await asyncio.gather(*(browser.get(url) for browser, url in pending))
    outcomes = sorted(
        (
            query_of(r.headers["location"]).get("status"),
            query_of(r.headers["location"]).get("error"),
        )
        for r in answers
    )
    assert outcomes == [("connected", None), ("error", "account_already_connected")], outcomes
    assert len(await harness.fivetran_connections()) == 1
    async with harness.app.state.sessionmaker() as s:
        live = (await s.scalars(select(Connection).where(Connection.state == "connected"))).all()
    assert len(live) == 1 and live[0].account_id
