"""OAuth 1.0a (RFC 5849) onboarding of X (Twitter) organic and X Ads, end to end and under
attack, against the sandbox OAuth 1.0a server (authlib's server components, HMAC-SHA1
signatures verified) and the Fivetran simulator (its setup test re-checks the handed-over
credentials with a signed request).

Attack tests do the attack and assert it fails and leaves nothing behind: no access-token
request reached the provider, no grant row or connection secret was written, no Fivetran
connection exists, and no request token, verifier or token value reached a log record (the
harness checks every value the test saw against the captured logs after each test).
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.connect import oauth1 as oauth1_flow
from app.connect.models import OAuthFlow
from app.connect.service import expire_stale_sessions
from app.connections.models import Connection
from app.connections.service import stored_secrets
from app.db import utcnow
from app.fivetran.payloads import validate_create_payload
from app.providers.errors import OAuthProviderError
from app.vault.models import VaultSecret
from tests.fixtures.browser import Browser, query_of, relative
from tests.fixtures.connect import COOKIE, FlowHarness


def _access_token_requests(spy: Any) -> list[tuple[str, str]]:
    return [r for r in spy.requests if r[1].endswith("/access_token")]


async def _authorize(harness: FlowHarness, service: str, **body: Any) -> tuple[Browser, str, dict]:
    """Session + start: (browser, the provider's authorize URL, the session)."""
    await harness.end_user()
    created = await harness.session(service, **body)
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    return browser, authorize_url, created


async def _decide(harness: FlowHarness, authorize_url: str, decision: str = "approve") -> str:
    """The sandbox consent page, then its form: the callback URL the provider redirects to."""
    page = await harness.client.get(relative(authorize_url))
    assert page.status_code == 200, page.text
    assert "Approve" in page.text and "Deny" in page.text
    token = query_of(authorize_url)["oauth_token"]
    action = re.search(r'action="([^"]+)"', page.text)
    assert action is not None
    r = await harness.client.post(
        action.group(1), data={"oauth_token": token, "decision": decision}
    )
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    params = query_of(location)
    harness.secrets_seen += [
        v for k, v in params.items() if k in ("oauth_token", "oauth_verifier", "denied")
    ]
    return location


async def _sent_body(harness: FlowHarness, service: str) -> dict[str, Any]:
    r = await harness.client.get("/sandbox/fivetran/_control/requests")
    items = r.json()["data"]["items"]
    bodies = [
        e["body"]
        for e in items
        if e["method"] == "POST"
        and e["path"].rstrip("/").endswith("/v1/connections")
        and isinstance(e["body"], dict)
        and e["body"].get("service") == service
    ]
    assert len(bodies) == 1, bodies
    return bodies[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", ["twitter", "twitter_ads"])
async def test_oauth1_flow_connects(harness: FlowHarness, service: str) -> None:
    browser, authorize_url, created = await _authorize(harness, service)
    assert authorize_url.startswith(f"http://127.0.0.1:8000/sandbox/oauth/oauth1/{service}/")
    assert set(query_of(authorize_url)) == {"oauth_token"}
    # The request token plays state: only its hash is stored.
    request_token = query_of(authorize_url)["oauth_token"]
    harness.secrets_seen.append(request_token)
    dump = await harness.database_dump()
    assert request_token.encode() not in dump

    callback = await _decide(harness, authorize_url)
    assert callback.startswith(f"http://127.0.0.1:8000/oauth/callback/{service}?")
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "no-store" in r.headers["cache-control"]
    back = query_of(r.headers["location"])
    assert back["status"] == "connected", back
    assert set(back) == {"tab", "session_id", "status", "connection_id"}  # tab: return_to's
    connection_id = back["connection_id"]

    # One signed access-token request, at the URL pinned in the flow row.
    assert len(_access_token_requests(harness.spy)) == 1
    hits = [h for h in await harness.as_token_requests() if h["provider_key"] == service]
    assert [h["grant_type"] for h in hits] == ["oauth1_access_token"]

    status = await harness.session_status(created["id"])
    assert status["status"] == "completed" and status["connection_id"] == connection_id
    conn = (
        await harness.client.get(f"/v1/connections/{connection_id}", headers=harness.headers)
    ).json()
    assert conn["state"] == "connected", conn
    assert conn["auth_method"] == "oauth1"
    assert conn["setup_tests"][0]["title"] == "Validate Login"
    assert conn["setup_tests"][0]["status"] == "PASSED"
    assert conn["setup_tests"][0]["message"] == ""  # really checked, not "not checked"

    # The create body is Fivetran's twitter/twitter_ads shape and validates against it.
    sent = await _sent_body(harness, service)
    validate_create_payload(sent)
    assert set(sent["auth"]) == {
        "consumer_key",
        "consumer_secret",
        "oauth_token",
        "oauth_token_secret",
    }
    # (the simulator's log masks the values; the setup test above checked them for real)
    assert "auth" not in sent["config"]
    if service == "twitter_ads":
        assert sent["config"]["is_custom_api_credentials"] is True

    # Encrypted at rest: no token value in any table.
    async with harness.app.state.sessionmaker() as s:
        row = await s.get(Connection, connection_id)
        assert row is not None
        secrets_ = await stored_secrets(s, harness.app.state, row)
    assert set(secrets_) == {"auth.consumer_secret", "auth.oauth_token", "auth.oauth_token_secret"}
    harness.secrets_seen += [secrets_["auth.oauth_token"], secrets_["auth.oauth_token_secret"]]
    dump = await harness.database_dump()
    for value in secrets_.values():
        assert value.encode() not in dump
    # The request token's secret was shredded once used.
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0

    # Events: connected, and the session completed.
    events = (await harness.client.get("/v1/events?end_user=acme", headers=harness.headers)).json()[
        "items"
    ]
    kinds = {e["type"] for e in events}
    assert {"connect_session.completed", "connection.connected"} <= kinds


async def test_sources_offer_twitter_by_oauth1_and_by_credentials(harness: FlowHarness) -> None:
    r = await harness.client.get("/v1/sources?q=twitter", headers=harness.headers)
    assert r.status_code == 200, r.text
    ways = {(s["service"], s["auth_method"]) for s in r.json()["items"]}
    assert {
        ("twitter", "oauth1"),
        ("twitter", "credentials"),
        ("twitter_ads", "oauth1"),
        ("twitter_ads", "credentials"),
    } <= ways
    one = (await harness.client.get("/v1/sources/twitter_ads", headers=harness.headers)).json()
    assert one["auth_method"] == "oauth1"  # the preferred way
    props = one["config_schema"]["properties"]
    assert "auth" not in props and "is_custom_api_credentials" not in props
    assert one["scopes"] == []
    assert "verified" in one


async def _nothing_left(harness: FlowHarness, spy_before: int = 0) -> None:
    assert len(_access_token_requests(harness.spy)) == spy_before
    rows = await harness.rows()
    assert rows["grants"] == 0
    assert rows["connection_secrets"] == 0
    assert rows["fivetran_connections"] == 0


async def test_denied_consent_fails_the_session(harness: FlowHarness) -> None:
    browser, authorize_url, created = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url, "deny")
    assert "denied" in query_of(callback) and "oauth_verifier" not in query_of(callback)
    r = await browser.get(relative(callback))
    assert r.status_code == 303
    back = query_of(r.headers["location"])
    assert back == {
        "tab": "sources",
        "session_id": created["id"],
        "status": "error",
        "error": "access_denied",
    }
    await _nothing_left(harness)
    assert (await harness.session_status(created["id"]))["status"] == "failed"
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0
    events = (await harness.client.get("/v1/events?end_user=acme", headers=harness.headers)).json()[
        "items"
    ]
    failed = [e for e in events if e["type"] == "connect_session.failed"]
    assert failed and failed[0]["data"]["error"] == "access_denied"


async def test_callback_without_the_binding_cookie_is_refused(harness: FlowHarness) -> None:
    _, authorize_url, created = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    other = harness.browser()  # the victim's browser: no binding cookie
    r = await other.get(relative(callback))
    assert r.status_code == 400
    assert "session_id=" in r.text  # the page links back to the stored return_to
    await _nothing_left(harness)
    assert (await harness.session_status(created["id"]))["status"] == "failed"


async def test_callback_with_another_flows_cookie_is_refused(harness: FlowHarness) -> None:
    _, authorize_url, _ = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    # The attacker's own flow gives their browser a valid cookie — for another flow.
    attacker, _, _ = await _authorize(harness, "twitter_ads", end_user="acme")
    assert COOKIE in attacker.cookies
    r = await attacker.get(relative(callback))
    assert r.status_code == 400
    await _nothing_left(harness)


async def test_oauth_token_that_is_not_ours_is_refused(harness: FlowHarness) -> None:
    browser, authorize_url, _ = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    params = query_of(callback)
    forged = (
        f"/oauth/callback/twitter?oauth_token={params['oauth_token']}x"
        f"&oauth_verifier={params['oauth_verifier']}"
    )
    r = await browser.get(forged)
    assert r.status_code == 400
    assert "location" not in r.headers
    missing = await browser.get(
        f"/oauth/callback/twitter?oauth_verifier={params['oauth_verifier']}"
    )
    assert missing.status_code == 400
    await _nothing_left(harness)
    # The genuine callback still works afterwards (nothing was consumed by the forgeries).
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["status"] == "connected"


async def test_replayed_callback_and_verifier_reuse_make_no_second_exchange(
    harness: FlowHarness,
) -> None:
    browser, authorize_url, _ = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["status"] == "connected"
    assert len(_access_token_requests(harness.spy)) == 1
    rows = await harness.rows()
    # Replay: same oauth_token + verifier, same browser, cookie restored.
    browser.cookies[COOKIE] = browser.last_binding
    again = await browser.get(relative(callback))
    assert again.status_code == 400
    assert len(_access_token_requests(harness.spy)) == 1
    assert await harness.rows() == rows


async def test_callback_for_another_provider_is_refused(harness: FlowHarness) -> None:
    browser, authorize_url, _ = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    r = await browser.get(
        relative(callback).replace("/callback/twitter?", "/callback/twitter_ads?")
    )
    assert r.status_code == 400
    await _nothing_left(harness)


async def test_callback_for_another_session_cannot_be_completed(harness: FlowHarness) -> None:
    """Session A's oauth_token with session B's browser: refused, A's flow is dead."""
    _, authorize_a, created_a = await _authorize(harness, "twitter")
    callback_a = await _decide(harness, authorize_a)
    browser_b, _, created_b = await _authorize(harness, "twitter_ads")
    r = await browser_b.get(relative(callback_a))
    assert r.status_code == 400
    await _nothing_left(harness)
    assert (await harness.session_status(created_a["id"]))["status"] == "failed"
    assert (await harness.session_status(created_b["id"]))["status"] == "pending"


async def test_verifier_of_another_request_token_is_refused_by_the_provider(
    harness: FlowHarness,
) -> None:
    """A verifier issued for another request token: the signed exchange is refused by the
    provider, and nothing is stored."""
    browser, authorize_url, created = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    _, other_url, _ = await _authorize(harness, "twitter")
    other = query_of(await _decide(harness, other_url))
    params = query_of(callback)
    r = await browser.get(
        f"/oauth/callback/twitter?oauth_token={params['oauth_token']}"
        f"&oauth_verifier={other['oauth_verifier']}"
    )
    assert r.status_code == 303
    back = query_of(r.headers["location"])
    assert back["status"] == "error" and back["error"] == "invalid_request", back
    rows = await harness.rows()
    assert rows["grants"] == 0 and rows["connection_secrets"] == 0
    assert rows["fivetran_connections"] == 0
    assert (await harness.session_status(created["id"]))["status"] == "failed"


async def test_flow_row_pins_the_access_token_url_and_callback(harness: FlowHarness) -> None:
    await _authorize(harness, "twitter")
    async with harness.app.state.sessionmaker() as s:
        flow = (await s.scalars(select(OAuthFlow))).one()
    assert flow.redirect_uri == "http://127.0.0.1:8000/oauth/callback/twitter"
    assert flow.token_endpoint.endswith("/sandbox/oauth/oauth1/twitter/access_token")
    assert flow.client_id == "sandbox-twitter"


async def test_concurrent_replays_make_exactly_one_exchange(harness: FlowHarness) -> None:
    browser, authorize_url, _ = await _authorize(harness, "twitter")
    callback = await _decide(harness, authorize_url)
    answers = await asyncio.gather(*(browser.get(relative(callback)) for _ in range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses.count(303) == 1 and statuses.count(400) == 9, statuses
    assert len(_access_token_requests(harness.spy)) == 1
    assert len(await harness.fivetran_connections()) == 1


async def test_request_token_failure_fails_the_session_and_writes_no_flow(
    harness: FlowHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unreachable(provider: Any, **_: Any) -> Any:
        raise OAuthProviderError("token_endpoint_unavailable", provider_key=provider.key)

    monkeypatch.setattr(oauth1_flow, "fetch_request_token", unreachable)
    await harness.end_user()
    created = await harness.session("twitter")
    browser = harness.browser()
    r = await browser.post(created["connect_url"])
    assert r.status_code == 303
    back = query_of(r.headers["location"])
    assert back["status"] == "error" and back["error"] == "token_endpoint_unavailable", back
    assert COOKIE not in browser.cookies
    assert await harness.count(OAuthFlow) == 0
    assert (await harness.session_status(created["id"]))["status"] == "failed"
    await _nothing_left(harness)


async def test_reauthorization_patches_the_new_token_credentials(harness: FlowHarness) -> None:
    browser, authorize_url, _ = await _authorize(harness, "twitter")
    r = await browser.get(relative(await _decide(harness, authorize_url)))
    connection_id = query_of(r.headers["location"])["connection_id"]
    async with harness.app.state.sessionmaker() as s:
        row = await s.get(Connection, connection_id)
        assert row is not None
        before = await stored_secrets(s, harness.app.state, row)
    harness.secrets_seen += [before["auth.oauth_token"], before["auth.oauth_token_secret"]]

    r = await harness.client.post(
        f"/v1/connections/{connection_id}/reauthorize",
        json={"return_to": "https://app.example.com/connected"},
        headers=harness.headers,
    )
    assert r.status_code == 201, r.text
    browser2 = harness.browser()
    authorize_url = await harness.start(browser2, r.json()["connect_url"])
    r = await browser2.get(relative(await _decide(harness, authorize_url)))
    back = query_of(r.headers["location"])
    assert back["status"] == "connected" and back["connection_id"] == connection_id, back
    async with harness.app.state.sessionmaker() as s:
        row = await s.get(Connection, connection_id)
        assert row is not None
        after = await stored_secrets(s, harness.app.state, row)
    harness.secrets_seen += [after["auth.oauth_token"], after["auth.oauth_token_secret"]]
    assert after["auth.oauth_token"] != before["auth.oauth_token"]
    log = (await harness.client.get("/sandbox/fivetran/_control/requests")).json()["data"]
    patches = [e for e in log["items"] if e["method"] == "PATCH"]
    assert patches and set(patches[-1]["body"]["auth"]) == {
        "consumer_key",
        "consumer_secret",
        "oauth_token",
        "oauth_token_secret",
    }
    assert len(await harness.fivetran_connections()) == 1  # the same connection


async def test_payload_preview_shows_the_oauth1_auth_block_masked(harness: FlowHarness) -> None:
    await harness.end_user()
    r = await harness.client.post(
        "/v1/payloads/preview",
        json={"end_user": "acme", "service": "twitter_ads", "config": {}},
        headers=harness.headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()["body"]
    validate_create_payload(body)
    assert body["config"]["is_custom_api_credentials"] is True
    assert set(body["auth"]) == {
        "consumer_key",
        "consumer_secret",
        "oauth_token",
        "oauth_token_secret",
    }
    assert "preview-oauth-token" not in r.text  # masked


async def test_expired_flow_sheds_the_request_token_secret(harness: FlowHarness) -> None:
    _, authorize_url, created = await _authorize(harness, "twitter")
    harness.secrets_seen.append(query_of(authorize_url)["oauth_token"])
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 1
    async with harness.app.state.sessionmaker() as s, s.begin():
        expired = await expire_stale_sessions(
            s, harness.app.state, now=utcnow() + timedelta(hours=1)
        )
    assert expired == 1
    assert (await harness.session_status(created["id"]))["status"] == "expired"
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0
