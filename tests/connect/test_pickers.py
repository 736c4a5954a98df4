"""Post-consent configuration (account pickers), end to end over the API.

Connect session → sandbox consent → callback → ``needs_configuration`` (no Fivetran
connection yet) → ``GET /v1/connections/{id}/options`` (fetched from the sandbox's simulated
provider list endpoint with the connection's access token) → ``POST …/configure`` →
``connected`` at the Fivetran simulator, whose create body carries the chosen config fields
and validates against Fivetran's request schema. Plus the problems: bad choices, wrong state,
a failing list endpoint, a token the provider revoked, an expired token (refreshed first),
changing the selection of a connected connection, unknown and foreign connections.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.connect.models import OAuthGrant
from app.connections.models import Connection
from app.db import utcnow
from app.events.models import Event
from app.fivetran.payloads import validate_create_payload
from app.providers.catalog_data import load_catalog_data
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import FlowHarness

PICKERS = sorted(k for k, v in load_catalog_data().items() if v.get("picker"))
OTHER_PICKERS = [k for k in PICKERS if k not in ("google_ads", "facebook_ads")]
SIM = ("sandbox_key", "sandbox_secret")


def test_every_picker_named_in_the_task_is_declared() -> None:
    assert set(PICKERS) == {
        "google_ads",
        "google_analytics_4",
        "google_search_console",
        "facebook_ads",
        "linkedin_ads",
        "bingads",
        "tiktok_ads",
        "snapchat_ads",
        "pinterest_ads",
    }


async def _consented(harness: FlowHarness, service: str, user: str = "auto") -> dict[str, Any]:
    """Consent for a picker source; returns the redirect's query (asserts the picker branch)."""
    await harness.end_user()
    created = await harness.session(service)
    browser = harness.browser()
    callback = await harness.consent(
        await harness.start(browser, created["connect_url"]), login_hint=user
    )
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    back = query_of(r.headers["location"])
    assert back["status"] == "needs_configuration", back
    assert back["session_id"] == created["id"]
    assert set(back) - {"tab"} == {"session_id", "status", "connection_id"}  # tab: RETURN_TO
    return back


async def _options(harness: FlowHarness, connection_id: str) -> Any:
    return await harness.client.get(
        f"/v1/connections/{connection_id}/options", headers=harness.headers
    )


async def _configure(
    harness: FlowHarness, connection_id: str, config: Any, key: str | None = None
) -> Any:
    headers = dict(harness.headers)
    if key:
        headers["Idempotency-Key"] = key
    return await harness.client.post(
        f"/v1/connections/{connection_id}/configure", json={"config": config}, headers=headers
    )


async def _creates(harness: FlowHarness, service: str) -> list[dict[str, Any]]:
    r = await harness.client.get("/sandbox/fivetran/_control/requests")
    return [
        e["body"]
        for e in r.json()["data"]["items"]
        if e["method"] == "POST"
        and e["path"].rstrip("/").endswith("/v1/connections")
        and isinstance(e["body"], dict)
        and e["body"].get("service") == service
    ]


async def _remote(harness: FlowHarness, fivetran_id: str) -> dict[str, Any]:
    r = await harness.client.get(f"/sandbox/fivetran/v1/connections/{fivetran_id}", auth=SIM)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


async def _kinds(harness: FlowHarness) -> list[str]:
    async with harness.app.state.sessionmaker() as s:
        return list((await s.scalars(select(Event.kind).order_by(Event.id))).all())


def _choice(listed: dict[str, Any], index: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in listed["fields"]:
        value = listed["options"][item["name"]][index]["value"]
        out[item["name"]] = [value] if item["multiple"] else value
    return out


@pytest.mark.parametrize(
    ("service", "field", "pattern", "mode"),
    [
        ("google_ads", "accounts", r"^[0-9]{10}$", {"sync_mode": "SpecificAccounts"}),
        ("facebook_ads", "accounts", r"^[0-9]{15}$", {"sync_mode": "SpecificAccounts"}),
    ],
)
async def test_picker_flow_end_to_end(
    harness: FlowHarness, service: str, field: str, pattern: str, mode: dict[str, str]
) -> None:
    import re

    back = await _consented(harness, service)
    connection_id = back["connection_id"]
    status = await harness.session_status(back["session_id"])
    assert status["status"] == "completed" and status["connection_id"] == connection_id
    r = await harness.client.get(f"/v1/connections/{connection_id}", headers=harness.headers)
    assert r.json()["state"] == "needs_configuration"
    assert r.json()["fivetran_connection_id"] is None
    assert await _creates(harness, service) == []  # nothing at Fivetran before the choice
    kinds = await _kinds(harness)
    assert "connection.needs_configuration" in kinds and "connect_session.completed" in kinds

    r = await _options(harness, connection_id)
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["state"] == "needs_configuration" and listed["selected"] == {}
    assert [f["name"] for f in listed["fields"]] == [field]
    choices = listed["options"][field]
    assert len(choices) == 3
    assert all(re.fullmatch(pattern, c["value"]) for c in choices), choices
    if service == "facebook_ads":
        assert choices[0]["label"] == "Acme Retail"

    # Bad choices: every field named, nothing created, still waiting.
    r = await _configure(harness, connection_id, {field: ["999", choices[0]["value"], 7]})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "invalid_choice"
    fields = {e["field"]: e["code"] for e in problem["errors"]}
    assert fields == {f"config.{field}[0]": "invalid_choice", f"config.{field}[2]": "invalid_type"}
    r = await _configure(harness, connection_id, {})
    assert r.status_code == 422 and r.json()["field"] == f"config.{field}"
    assert r.json()["code"] == "required"
    r = await _configure(harness, connection_id, {field: [choices[0]["value"]], "sync_mode": "x"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"config.sync_mode"}
    r = await harness.client.post(
        f"/v1/connections/{connection_id}/configure", json={"nope": 1}, headers=harness.headers
    )
    assert r.status_code == 422
    assert await _creates(harness, service) == []

    chosen = [choices[1]["value"], choices[2]["value"]]
    r = await _configure(harness, connection_id, {field: chosen}, key="cfg-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "connected", body
    sent = await _creates(harness, service)
    assert len(sent) == 1
    validate_create_payload(sent[0])
    assert sent[0]["config"][field] == chosen
    for name, value in mode.items():
        assert sent[0]["config"][name] == value
    remote = await _remote(harness, body["fivetran_connection_id"])
    assert remote["config"][field] == chosen
    assert remote["status"]["setup_state"] == "connected"
    async with harness.app.state.sessionmaker() as s:
        row = await s.get(Connection, connection_id)
        assert row is not None and row.grant_handed_off_at is not None

    # Replay: the first answer, no second create.
    r = await _configure(harness, connection_id, {field: chosen}, key="cfg-1")
    assert r.status_code == 200 and r.headers.get("Idempotent-Replayed") == "true"
    assert r.json()["id"] == connection_id
    assert len(await _creates(harness, service)) == 1
    r = await _configure(harness, connection_id, {field: chosen[:1]}, key="cfg-1")
    assert r.status_code == 409  # same key, other body

    # Change the selection of the connected connection: PATCHed at Fivetran.
    r = await _options(harness, connection_id)
    assert r.status_code == 200 and r.json()["selected"] == {field: chosen}
    r = await _configure(harness, connection_id, {field: [choices[0]["value"]]})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connected"
    remote = await _remote(harness, body["fivetran_connection_id"])
    assert remote["config"][field] == [choices[0]["value"]]
    assert len(await _creates(harness, service)) == 1
    r = await _configure(harness, connection_id, {field: ["1"]})
    assert r.status_code == 422


@pytest.mark.parametrize("provider_key", OTHER_PICKERS)
async def test_other_pickers_list_and_configure(harness: FlowHarness, provider_key: str) -> None:
    provider = harness.app.state.providers.get(provider_key)
    service = provider.fivetran_service
    back = await _consented(harness, service)
    connection_id = back["connection_id"]
    r = await _options(harness, connection_id)
    assert r.status_code == 200, r.text
    listed = r.json()
    picker = provider.spec.picker
    assert [f["name"] for f in listed["fields"]] == [f.name for f in picker.fields]
    for item in listed["fields"]:
        assert listed["options"][item["name"]], listed
        assert all(o["label"] for o in listed["options"][item["name"]])
    bad = {name: ["not-a-choice"] for name in listed["options"]}
    r = await _configure(harness, connection_id, bad)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {f"config.{n}[0]" for n in bad}
    choice = _choice(listed)
    r = await _configure(harness, connection_id, choice)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "connected"
    sent = await _creates(harness, service)
    assert len(sent) == 1
    validate_create_payload(sent[0])
    for name, value in {**choice, **picker.config}.items():
        assert sent[0]["config"][name] == value


async def test_wrong_state_unknown_and_unconfigurable_connections(harness: FlowHarness) -> None:
    await harness.end_user()
    # Reserved, not consented yet: no choices.
    created = await harness.session("google_ads")
    status = await harness.session_status(created["id"])
    pending = status["connection_id"]
    r = await _options(harness, pending)
    assert r.status_code == 409 and r.json()["code"] == "invalid_connection_state"
    r = await _configure(harness, pending, {"accounts": ["1"]})
    assert r.status_code == 409 and r.json()["code"] == "invalid_connection_state"
    # A source without a picker.
    browser, callback, _ = await harness.callback_url_for("hubspot")
    r = await browser.get(relative(callback))
    hubspot = query_of(r.headers["location"])["connection_id"]
    r = await _options(harness, hubspot)
    assert r.status_code == 409 and r.json()["code"] == "not_configurable"
    # Unknown connection.
    r = await _options(harness, "con_nope")
    assert r.status_code == 404 and r.json()["code"] == "connection_not_found"
    r = await _configure(harness, "con_nope", {"accounts": ["1"]})
    assert r.status_code == 404


async def test_keys_restricted_to_other_end_users_and_read_only_keys(
    harness: FlowHarness,
) -> None:
    from app.callers.service import create_api_key

    back = await _consented(harness, "google_ads")
    connection_id = back["connection_id"]
    async with harness.app.state.sessionmaker() as s, s.begin():
        _, partner = await create_api_key(
            s, name="partner", scopes=["read", "write"], end_user_prefix="partner-"
        )
        _, reader = await create_api_key(s, name="reader", scopes=["read"])
    foreign = {"Authorization": f"Bearer {partner}"}
    r = await harness.client.get(f"/v1/connections/{connection_id}/options", headers=foreign)
    assert r.status_code == 404
    r = await harness.client.post(
        f"/v1/connections/{connection_id}/configure",
        json={"config": {"accounts": ["1"]}},
        headers=foreign,
    )
    assert r.status_code == 404
    read_only = {"Authorization": f"Bearer {reader}"}
    r = await harness.client.get(f"/v1/connections/{connection_id}/options", headers=read_only)
    assert r.status_code == 200, r.text
    r = await harness.client.post(
        f"/v1/connections/{connection_id}/configure",
        json={"config": _choice(r.json())},
        headers=read_only,
    )
    assert r.status_code == 403
    assert await _creates(harness, "google_ads") == []


@pytest.mark.parametrize("kind", ["list_502", "list_malformed"])
async def test_list_endpoint_failure_is_a_502(harness: FlowHarness, kind: str) -> None:
    back = await _consented(harness, "facebook_ads")
    connection_id = back["connection_id"]
    await harness.misbehave("facebook_ads", kind)
    r = await _options(harness, connection_id)
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "provider_list_failed"
    assert "accounts" in r.json()["detail"]
    await harness.misbehave("facebook_ads", kind)
    r = await _configure(harness, connection_id, {"accounts": ["1"]})
    assert r.status_code == 502
    assert await _creates(harness, "facebook_ads") == []
    r = await harness.client.get(f"/v1/connections/{connection_id}", headers=harness.headers)
    assert r.json()["state"] == "needs_configuration"
    r = await _options(harness, connection_id)  # the provider is back
    assert r.status_code == 200, r.text


async def _revoke_at_sandbox(harness: FlowHarness, provider_key: str, token: str) -> None:
    from app.providers.registry import sandbox_client_id, sandbox_client_secret

    r = await harness.client.post(
        f"/sandbox/oauth/{provider_key}/revoke",
        data={
            "token": token,
            "client_id": sandbox_client_id(provider_key),
            "client_secret": sandbox_client_secret(provider_key),
        },
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("service", "field"), [("facebook_ads", "access"), ("google_ads", "refresh")]
)
async def test_token_revoked_at_the_provider(
    harness: FlowHarness, service: str, field: str
) -> None:
    back = await _consented(harness, service)
    connection_id = back["connection_id"]
    access, refresh = await harness.stored_tokens(connection_id)
    # Revoking the refresh token (Google) ends the whole grant, the access token included.
    await _revoke_at_sandbox(harness, service, access if field == "access" else refresh)
    r = await _options(harness, connection_id)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "needs_reauth"
    r = await _configure(harness, connection_id, {"accounts": ["1"]})
    assert r.status_code == 409 and r.json()["code"] == "needs_reauth"
    assert await _creates(harness, service) == []


async def test_expired_access_token_is_refreshed_first(harness: FlowHarness) -> None:
    back = await _consented(harness, "google_ads")
    connection_id = back["connection_id"]
    old_access, _ = await harness.stored_tokens(connection_id)
    async with harness.app.state.sessionmaker() as s, s.begin():
        grant = await s.get(OAuthGrant, connection_id)
        assert grant is not None
        grant.access_token_expires_at = utcnow() - timedelta(minutes=5)
    before = [h for h in await harness.as_token_requests() if h["provider_key"] == "google_ads"]
    r = await _options(harness, connection_id)
    assert r.status_code == 200, r.text
    after = [h for h in await harness.as_token_requests() if h["provider_key"] == "google_ads"]
    assert [h["grant_type"] for h in after[len(before) :]] == ["refresh_token"]
    new_access, _ = await harness.stored_tokens(connection_id)
    assert new_access != old_access
    # The old token is dead at the provider? It still lists (Google keeps it until expiry);
    # what matters: the configure that follows uses the stored, fresh grant.
    r = await _configure(harness, connection_id, _choice(r.json()))
    assert r.status_code == 200 and r.json()["state"] == "connected", r.text


async def test_expired_token_of_a_handed_off_grant_is_never_refreshed(
    harness: FlowHarness,
) -> None:
    back = await _consented(harness, "google_ads")
    connection_id = back["connection_id"]
    r = await _options(harness, connection_id)
    r = await _configure(harness, connection_id, _choice(r.json()))
    assert r.json()["state"] == "connected"
    async with harness.app.state.sessionmaker() as s, s.begin():
        grant = await s.get(OAuthGrant, connection_id)
        assert grant is not None
        grant.access_token_expires_at = utcnow() - timedelta(minutes=5)
    before = len(await harness.as_token_requests())
    r = await _options(harness, connection_id)
    assert r.status_code == 409 and r.json()["code"] == "access_token_expired", r.text
    assert len(await harness.as_token_requests()) == before  # single refresher: Fivetran


async def test_reauthorization_keeps_the_selection(harness: FlowHarness) -> None:
    back = await _consented(harness, "facebook_ads")
    connection_id = back["connection_id"]
    r = await _options(harness, connection_id)
    choice = _choice(r.json())
    r = await _configure(harness, connection_id, choice)
    assert r.json()["state"] == "connected"
    again = await harness.session("facebook_ads", connection_id=connection_id)
    browser = harness.browser()
    callback = await harness.consent(await harness.start(browser, again["connect_url"]))
    r = await browser.get(relative(callback))
    back = query_of(r.headers["location"])
    assert back["status"] == "connected" and back["connection_id"] == connection_id
    r = await _options(harness, connection_id)
    assert r.json()["selected"] == choice
    assert len(await _creates(harness, "facebook_ads")) == 1
