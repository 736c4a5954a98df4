"""Attack tests of oauth-security.md R1–R24 against the real app and the sandbox
authorization server. Each one performs the attack and asserts that it fails and leaves
nothing behind: no token request (spy on the outbound transport), no connection secret, no
grant, nothing connected at Fivetran.

Requirements owned elsewhere: R10, R13's config side, R14's config side and R23 are
provider-configuration checks (``tests/providers``); R21 (revoke on disconnect) belongs to the
connection lifecycle (``tests/connections``). They are exercised here only where the browser
flow touches them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from app.connect.models import ConnectSession, OAuthFlow
from app.connections.models import Connection
from app.db import utcnow
from tests.fixtures.browser import query_of, relative, with_params
from tests.fixtures.connect import APP_ORIGIN, BASE_URL, COOKIE, RETURN_TO, FlowHarness

PROVIDER = "hubspot"
NOTHING = {"connection_secrets": 0, "grants": 0, "fivetran_connections": 0}


async def _nothing_left(harness: FlowHarness) -> None:
    rows = await harness.rows()
    assert {k: rows[k] for k in NOTHING} == NOTHING, rows
    assert harness.spy.token_requests() == []
    async with harness.app.state.sessionmaker() as s:
        states = (await s.scalars(select(Connection.state))).all()
    assert "connected" not in states


async def _flow(harness: FlowHarness, session_id: str) -> OAuthFlow:
    async with harness.app.state.sessionmaker() as s:
        flow = await s.scalar(select(OAuthFlow).where(OAuthFlow.session_id == session_id))
        assert flow is not None
        return flow


def _assert_static_page(response: Any, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


# --- A. state, CSRF, browser binding --------------------------------------------------------


async def test_r01_missing_unknown_expired_or_altered_state_is_rejected(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    params = query_of(callback)
    state = params["state"]
    assert len(state) >= 43  # 256 bits, url-safe
    path = urlsplit(callback).path
    altered = state[:-1] + ("A" if state[-1] != "A" else "B")
    for query in (
        {k: v for k, v in params.items() if k != "state"},
        {**params, "state": "x" * 43},
        {**params, "state": altered},
        {**params, "state": ""},
    ):
        _assert_static_page(await browser.get(path, params=query))
    # Expired: the same, untouched state after the flow's expiry.
    async with harness.app.state.sessionmaker() as s, s.begin():
        await s.execute(update(OAuthFlow).values(expires_at=utcnow()))
    _assert_static_page(await browser.get(relative(callback)))
    await _nothing_left(harness)
    # Only the hash of the state is stored.
    async with harness.app.state.sessionmaker() as s:
        flow = await s.scalar(select(OAuthFlow))
        assert flow is not None
        assert flow.state_hash == hashlib.sha256(state.encode()).hexdigest()
        assert flow.expires_at - flow.created_at <= __import__("datetime").timedelta(minutes=10)


async def test_r02_replayed_callback_exchanges_the_code_once(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _created = await harness.callback_url_for(PROVIDER)
    cookie = {"Cookie": f"{COOKIE}={_jar(browser)}"}
    first = await browser.get(relative(callback), headers=cookie)
    assert first.status_code == 303
    assert len(harness.spy.token_requests()) == 1
    before = await harness.rows()
    replay = await browser.get(relative(callback), headers=cookie)
    _assert_static_page(replay)
    assert len(harness.spy.token_requests()) == 1
    assert await harness.rows() == before


def _jar(browser: Any) -> str:
    return str(browser.cookies.get(COOKIE, ""))


async def test_r02_ten_concurrent_callbacks_make_one_token_request(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _created = await harness.callback_url_for(PROVIDER)
    cookie = {"Cookie": f"{COOKIE}={_jar(browser)}"}
    results = await asyncio.gather(
        *(harness.client.get(relative(callback), headers=cookie) for _ in range(10))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [303] + [400] * 9, statuses
    assert len(harness.spy.token_requests()) == 1
    winner = next(r for r in results if r.status_code == 303)
    assert query_of(winner.headers["location"])["status"] == "connected"
    rows = await harness.rows()
    assert rows["grants"] == 1 and rows["fivetran_connections"] == 1


async def test_r03_callback_from_another_browser_is_rejected(harness: FlowHarness) -> None:
    await harness.end_user()
    # Jar A starts; the consent (as the victim) completes in jar B, which has no cookie.
    _jar_a, callback, created = await harness.callback_url_for(PROVIDER)
    jar_b = harness.browser()
    _assert_static_page(await jar_b.get(relative(callback)))
    assert (await harness.session_status(created["id"]))["status"] == "failed"
    # Jar B holding the binding cookie of a different flow (its own, or a third one).
    _jar_c, callback_2, _ = await harness.callback_url_for(PROVIDER)
    _other_jar, _cb3, _ = await harness.callback_url_for(PROVIDER)
    jar_b.cookies[COOKIE] = _other_jar.cookies[COOKIE]
    _assert_static_page(await jar_b.get(relative(callback_2)))
    await _nothing_left(harness)
    # The binding cookie: HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=600; only its hash
    # is stored.
    created_4 = await harness.session(PROVIDER)
    r = await harness.browser().post(created_4["connect_url"])
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=lax", "Path=/", "Max-Age=600"):
        assert attribute.lower() in set_cookie.lower()
    assert "domain=" not in set_cookie.lower()
    value = set_cookie.split(";", 1)[0].split("=", 1)[1]
    flow = await _flow(harness, created_4["id"])
    assert flow.ua_binding_hash == hashlib.sha256(value.encode()).hexdigest()


#: Header sets Chromium 156 was observed to send on the start POST, by who sent it. Only our
#: own page (same-origin) and an allow-listed origin may start a flow.
BROWSER_HEADER_SETS = [
    ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),  # no-referrer page elsewhere
    ({"Origin": "null", "Sec-Fetch-Site": "same-site"}, 403),  # sibling loopback port
    ({"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403),  # no Origin at all
    ({"Origin": "null"}, 403),  # opaque origin, no fetch metadata (old browser, sandbox)
    ({}, 403),
    ({"Origin": "null", "Sec-Fetch-Site": "none"}, 403),  # typed into the address bar
    ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 303),  # our page, no-referrer
    ({"Origin": "http://127.0.0.1:8000", "Sec-Fetch-Site": "same-origin"}, 303),  # our page
    ({"Origin": APP_ORIGIN, "Sec-Fetch-Site": "cross-site"}, 303),  # the company's page
]


@pytest.mark.parametrize(("sent", "status"), BROWSER_HEADER_SETS)
async def test_r04_start_post_by_browser_header_set(
    harness: FlowHarness, sent: dict[str, str], status: int
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    r = await harness.browser().post(created["connect_url"], origin=None, headers=sent)
    assert r.status_code == status, (sent, r.status_code)
    async with harness.app.state.sessionmaker() as s:
        consumed = await s.scalar(select(ConnectSession.token_consumed_at))
    if status == 403:
        assert "set-cookie" not in r.headers
        assert consumed is None
        assert harness.spy.token_requests() == []
    else:
        assert consumed is not None


async def test_r04_start_is_not_a_bearer_get_link(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    url = created["connect_url"]
    browser = harness.browser()
    # GET shows a page: no cookie, no redirect, nothing consumed.
    page = await browser.get(url)
    assert page.status_code == 200 and "set-cookie" not in page.headers
    assert "location" not in page.headers
    # Foreign, missing and opaque origins are refused without consuming the token.
    for origin in ("https://evil.example", None, "null", "https://app.example.com.evil.com"):
        r = await browser.post(url, origin=origin)
        assert r.status_code == 403, (origin, r.status_code)
        assert "set-cookie" not in r.headers
    async with harness.app.state.sessionmaker() as s:
        assert (await s.scalar(select(ConnectSession.token_consumed_at))) is None
    # Allowed origin: 303 to the provider. A reused token is refused.
    ok = await browser.post(url)
    assert ok.status_code == 303
    reused = await harness.browser().post(url)
    _assert_static_page(reused)
    # A token of end-user X with the binding cookie of end-user Y's flow is rejected.
    await harness.end_user("other-co")
    x = await harness.session(PROVIDER)
    y = await harness.session(PROVIDER, end_user="other-co")
    jar_x, jar_y = harness.browser(), harness.browser()
    callback_x = await harness.consent(await harness.start(jar_x, x["connect_url"]))
    await harness.start(jar_y, y["connect_url"])
    _assert_static_page(await jar_y.get(relative(callback_x)))
    await _nothing_left(harness)


# --- B. PKCE ---------------------------------------------------------------------------------


async def test_r05_pkce_s256_verifier_server_side_and_wrong_verifier_fails(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    start = await browser.post(created["connect_url"])
    authorize_url = start.headers["location"]
    query = query_of(authorize_url)
    assert query["code_challenge_method"] == "S256"
    flow = await _flow(harness, created["id"])
    async with harness.app.state.sessionmaker() as s:
        verifier = await harness.app.state.vault.get(
            s,
            end_user_id=flow.end_user_id,
            owner_type="oauth_flow",
            owner_id=flow.id,
            field="code_verifier",
        )
    assert verifier is not None and 43 <= len(verifier.reveal()) <= 128
    expected = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.reveal().encode()).digest())
        .rstrip(b"=")
        .decode()
    )
    assert query["code_challenge"] == expected
    assert verifier.reveal() not in authorize_url and verifier.reveal() not in start.text
    # Attack: the verifier the exchange will use is not the one the challenge was made from
    # (as if an attacker's code were injected): the AS answers invalid_grant.
    async with harness.app.state.sessionmaker() as s, s.begin():
        await harness.app.state.vault.put(
            s,
            end_user_id=flow.end_user_id,
            owner_type="oauth_flow",
            owner_id=flow.id,
            field="code_verifier",
            value="w" * 64,
        )
    callback = await harness.consent(authorize_url)
    r = await browser.get(relative(callback))
    assert r.status_code == 303
    assert query_of(r.headers["location"]) == {
        "tab": "sources",
        "session_id": created["id"],
        "status": "error",
        "error": "invalid_grant",
    }
    token_bodies = [
        b
        for (m, p), b in zip(harness.spy.requests, harness.spy.bodies, strict=True)
        if p.endswith("/token")
    ]
    assert len(token_bodies) == 1 and b"code_verifier=" in token_bodies[0]
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0
    # The verifier is shredded once the flow is over.
    async with harness.app.state.sessionmaker() as s:
        assert (
            await harness.app.state.vault.get(
                s,
                end_user_id=flow.end_user_id,
                owner_type="oauth_flow",
                owner_id=flow.id,
                field="code_verifier",
            )
            is None
        )


async def test_r06_csrf_fails_on_state_and_binding_even_without_pkce(
    harness: FlowHarness,
) -> None:
    provider = harness.app.state.providers.get("pipedrive")
    assert provider.spec.pkce is False  # an AS that does not do PKCE
    await harness.end_user()
    # The attacker runs their own flow up to the provider's redirect, then feeds their
    # callback (their code + state) to the victim's browser, which never started it.
    _attacker, callback, _ = await harness.callback_url_for("pipedrive")
    victim = harness.browser()
    await harness.start(victim, (await harness.session("pipedrive"))["connect_url"])
    _assert_static_page(await victim.get(relative(callback)))
    await _nothing_left(harness)


# --- C. redirect URI -------------------------------------------------------------------------


async def test_r07_redirect_uri_comes_from_configuration_not_host_headers(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    r = await browser.post(
        created["connect_url"],
        headers={
            "Host": "evil.example",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
        },
    )
    assert r.status_code == 303
    redirect_uri = query_of(r.headers["location"])["redirect_uri"]
    assert redirect_uri == f"{BASE_URL}/oauth/callback/{PROVIDER}"
    flow = await _flow(harness, created["id"])
    assert flow.redirect_uri == redirect_uri
    callback = await harness.consent(r.headers["location"])
    assert (await browser.get(relative(callback))).status_code == 303
    token_body = next(
        b
        for (_m, p), b in zip(harness.spy.requests, harness.spy.bodies, strict=True)
        if p.endswith("/token")
    )
    assert query_of("?" + token_body.decode())["redirect_uri"] == flow.redirect_uri


async def test_r08_callback_on_another_providers_path_is_rejected(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    other = urlsplit(callback)._replace(path="/oauth/callback/asana").geturl()
    _assert_static_page(await browser.get(relative(other)))
    # Consumed and failed: the genuine path cannot be used afterwards either.
    _assert_static_page(await browser.get(relative(callback)))
    assert (await harness.session_status(created["id"]))["status"] == "failed"
    await _nothing_left(harness)


# --- D. mix-up -------------------------------------------------------------------------------


async def test_r09_foreign_or_missing_iss_is_rejected_before_the_exchange(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    flow = await _flow(harness, created["id"])
    assert query_of(callback)["iss"] == flow.issuer
    other_issuer = harness.app.state.providers.get("asana").endpoints({}).issuer
    r = await browser.get(relative(with_params(callback, iss=other_issuer)))
    assert r.status_code == 303
    assert query_of(r.headers["location"])["error"] == "issuer_mismatch"
    # Missing iss while the provider advertises RFC 9207 support.
    browser_2, callback_2, created_2 = await harness.callback_url_for(PROVIDER)
    assert (await _flow(harness, created_2["id"])).iss_parameter_supported
    params = {k: v for k, v in query_of(callback_2).items() if k != "iss"}
    r = await browser_2.get(urlsplit(callback_2).path, params=params)
    assert r.status_code == 303 and query_of(r.headers["location"])["status"] == "error"
    # An error response with a foreign iss is not attributed to the AS.
    browser_3 = harness.browser()
    created_3 = await harness.session(PROVIDER)
    denied = await harness.consent(
        await harness.start(browser_3, created_3["connect_url"]), login_hint="deny"
    )
    r = await browser_3.get(relative(with_params(denied, iss=other_issuer)))
    assert query_of(r.headers["location"])["error"] == "issuer_mismatch"
    await _nothing_left(harness)


# --- E. exchange -----------------------------------------------------------------------------


async def test_r11_injected_code_from_another_flow_fails_with_invalid_grant(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    # The attacker's own flow yields a code bound to the attacker's PKCE challenge.
    _attacker, attacker_callback, _ = await harness.callback_url_for(PROVIDER)
    stolen_code = query_of(attacker_callback)["code"]
    victim, victim_callback, _created = await harness.callback_url_for(PROVIDER)
    injected = with_params(victim_callback, code=stolen_code)
    r = await victim.get(relative(injected))
    assert r.status_code == 303
    assert query_of(r.headers["location"])["error"] == "invalid_grant"
    assert len(harness.spy.token_requests()) == 1  # exactly one exchange, with the victim's
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0


@pytest.mark.parametrize(
    ("misbehaviour", "error"),
    [
        ("no_refresh_token", "missing_refresh_token"),
        ("html_502", "server_error"),
        ("error_200", "invalid_grant"),
        ("narrow_scope", "insufficient_scope"),
    ],
)
async def test_r12_bad_token_responses_store_nothing(
    harness: FlowHarness, all_logs: pytest.LogCaptureFixture, misbehaviour: str, error: str
) -> None:
    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    await harness.misbehave(PROVIDER, misbehaviour)
    r = await browser.get(relative(callback))
    assert r.status_code == 303
    assert query_of(r.headers["location"])["status"] == "error"
    assert query_of(r.headers["location"])["error"] == error
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0
    assert rows["fivetran_connections"] == 0
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == error
    from tests.fixtures.connect import log_text

    text = log_text(all_logs)
    assert query_of(callback)["code"] not in text


# --- F. client authentication and transport ------------------------------------------------


async def test_r13_client_secret_with_special_characters_and_post_only_auth(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    for key in ("pipedrive", PROVIDER):  # Basic (RFC 6749 §2.3.1 encoding) and post
        provider = harness.app.state.providers.get(key)
        secret = (await harness.app.state.providers.credentials(None, key)).client_secret.reveal()
        assert {"+", "%", ":"} <= set(secret)
        browser, callback, _ = await harness.callback_url_for(provider.fivetran_service)
        start = len(harness.spy.requests)
        r = await browser.get(relative(callback))
        assert query_of(r.headers["location"])["status"] == "connected", r.headers["location"]
        idx = next(
            i
            for i in range(start, len(harness.spy.requests))
            if harness.spy.requests[i][1].endswith("/token")
        )
        headers, body = harness.spy.headers[idx], harness.spy.bodies[idx]
        if provider.token_auth_method == "client_secret_basic":
            assert headers["authorization"].startswith("Basic ")
            assert b"client_secret" not in body
        else:
            assert "authorization" not in headers
            assert b"client_secret=" in body


async def test_r14_token_endpoint_redirect_is_not_followed(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    await harness.misbehave(PROVIDER, "redirect_307")
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["error"] == "token_endpoint_redirect"
    assert len(harness.spy.token_requests()) == 1
    assert not any("other.example" in p for _m, p in harness.spy.requests)
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0


# --- G. leakage -------------------------------------------------------------------------------


async def test_r15_callback_redirects_without_secrets_and_with_safe_headers(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    start = await browser.post(created["connect_url"])
    assert start.headers["referrer-policy"] == "no-referrer"
    assert start.headers["cache-control"] == "no-store"
    callback = await harness.consent(start.headers["location"])
    r = await browser.get(relative(callback))
    assert r.status_code == 303 and r.content == b""
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    location = r.headers["location"]
    assert location.startswith(RETURN_TO.split("?")[0])
    params = query_of(location)
    assert set(params) == {"tab", "session_id", "status", "connection_id"}
    for value in query_of(callback).values():
        assert value not in location
    assert "token" not in location and "code" not in params and "state" not in params
    assert "iss" not in params
    # The binding cookie is cleared once the flow is over.
    assert COOKIE not in browser.cookies


async def test_r16_no_code_state_verifier_or_tokens_in_logs(
    harness: FlowHarness, all_logs: pytest.LogCaptureFixture
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    flow = await _flow(harness, created["id"])
    async with harness.app.state.sessionmaker() as s:
        verifier = await harness.app.state.vault.get(
            s,
            end_user_id=flow.end_user_id,
            owner_type="oauth_flow",
            owner_id=flow.id,
            field="code_verifier",
        )
    assert verifier is not None
    callback = await harness.consent(authorize_url)
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["status"] == "connected"
    access, refresh = await harness.stored_tokens(query_of(r.headers["location"])["connection_id"])
    secret = (await harness.app.state.providers.credentials(None, PROVIDER)).client_secret
    text = log_text_all(all_logs)
    assert all_logs.records, "expected DEBUG logs"
    for value in (
        query_of(callback)["code"],
        query_of(callback)["state"],
        verifier.reveal(),
        access,
        refresh,
        secret.reveal(),
        browser_cookie_value(browser),
    ):
        assert value and value not in text


def log_text_all(caplog: pytest.LogCaptureFixture) -> str:
    from tests.fixtures.connect import log_text

    return log_text(caplog)


def browser_cookie_value(browser: Any) -> str:
    return str(getattr(browser, "last_binding", "") or "binding-cookie-not-kept")


async def test_r17_no_token_field_in_api_schemas_or_responses(harness: FlowHarness) -> None:
    schema = harness.app.openapi()
    text = str(schema.get("components", {}).get("schemas", {})).lower()
    for word in ("access_token", "refresh_token", "code_verifier", "client_secret"):
        assert word not in text, word
    await harness.end_user()
    bodies: list[str] = []
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    start = await browser.post(created["connect_url"])
    bodies.append(start.text)
    callback = await harness.consent(start.headers["location"])
    r = await browser.get(relative(callback))
    bodies.append(r.text + r.headers["location"])
    status = await harness.client.get(
        f"/v1/connect-sessions/{created['id']}", headers=harness.headers
    )
    bodies.append(status.text)
    connection_id = query_of(r.headers["location"])["connection_id"]
    for path in (f"/v1/connections/{connection_id}", "/v1/connections?end_user=acme"):
        got = await harness.client.get(path, headers=harness.headers)
        bodies.append(got.text)
    access, refresh = await harness.stored_tokens(connection_id)
    for body in bodies:
        assert access not in body and refresh not in body


# --- H. refresh tokens ----------------------------------------------------------------------


async def test_r18_tokens_are_encrypted_at_rest(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    access, refresh = await harness.stored_tokens(connection_id)
    dump = await harness.database_dump()
    assert access.encode() not in dump and refresh.encode() not in dump
    # Decrypting under another owner's associated data fails.
    from app.vault import DecryptionFailed
    from app.vault.models import VaultSecret

    async with harness.app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(VaultSecret)
            .where(VaultSecret.owner_id == connection_id, VaultSecret.field == "refresh_token")
            .values(owner_id="con_other")
        )
    async with harness.app.state.sessionmaker() as s:
        with pytest.raises(DecryptionFailed):
            await harness.app.state.vault.get(
                s,
                end_user_id=(await s.scalar(select(Connection.end_user_id))),
                owner_type="connection",
                owner_id="con_other",
                field="refresh_token",
            )


# --- I. return_to --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.com",
        "//evil.com",
        "/\\evil.com",
        "https:evil.com",
        "https://app.example.com@evil.com",
        "https://app.example.com.evil.com",
        "https://evil.com%2F@app.example.com",
        "https://app.example.com%2F.evil.com/",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        " https://app.example.com",
        "https://app.example.com\t.evil.com",
        "https://app.example.com:8443",
        "http://app.example.com",
        "/relative/path",
        "https://app.example.com\\@evil.com",
    ],
)
async def test_r22_unsafe_return_to_is_rejected(harness: FlowHarness, return_to: str) -> None:
    await harness.end_user()
    before = await harness.rows()
    r = await harness.create_session(PROVIDER, return_to=return_to)
    assert r.status_code == 422, (return_to, r.status_code)
    assert r.json()["field"] == "return_to"
    assert await harness.rows() == before


@pytest.mark.parametrize(
    "return_to", ["HTTPS://APP.EXAMPLE.COM/ok", "https://app.example.com/path?x=1"]
)
async def test_r22_safe_return_to_is_accepted(harness: FlowHarness, return_to: str) -> None:
    await harness.end_user()
    r = await harness.create_session(PROVIDER, return_to=return_to)
    assert r.status_code == 201, r.text


async def test_r22_callback_never_redirects_to_query_data(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _created = await harness.callback_url_for(PROVIDER)
    evil = {
        "return_to": "https://evil.com/",
        "next": "https://evil.com/",
        "redirect_uri": "https://evil.com/",
    }
    # Unknown state with redirect-ish parameters: a static page.
    unknown = with_params(callback, state="u" * 43, **evil)
    _assert_static_page(await browser.get(relative(unknown)))
    # Valid callback with the same parameters: the stored return_to wins.
    r = await browser.get(relative(with_params(callback, **evil)))
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"{APP_ORIGIN}/connected?")
    assert "evil" not in r.headers["location"]


# --- J. miscellany -----------------------------------------------------------------------------


async def test_r23_authorization_request_uses_code_flow_only(harness: FlowHarness) -> None:
    await harness.end_user()
    for provider in harness.app.state.providers.configured():
        assert provider.spec.response_type == "code"
        assert provider.spec.response_mode in (None, "query")
        assert "password" not in provider.spec.grant_types
    created = await harness.session(PROVIDER)
    start = await harness.browser().post(created["connect_url"])
    query = query_of(start.headers["location"])
    assert query["response_type"] == "code"
    assert "response_mode" not in query


async def test_r24_error_callback_is_verified_then_returned_as_an_allow_listed_code(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    denied = await harness.consent(authorize_url, login_hint="deny")
    assert query_of(denied)["error"] == "access_denied"
    assert "iss" in query_of(denied) and "state" in query_of(denied)
    # A forged description must never be reflected.
    forged = with_params(denied, error_description="<script>alert(1)</script>")
    r = await browser.get(relative(forged))
    assert r.status_code == 303
    assert query_of(r.headers["location"]) == {
        "tab": "sources",
        "session_id": created["id"],
        "status": "error",
        "error": "access_denied",
    }
    # The flow is consumed: a replay gets the static page.
    _assert_static_page(await browser.get(relative(denied)))
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "access_denied"
    # Unknown codes are mapped onto the allow-list; unknown state → generic page.
    browser_2 = harness.browser()
    created_2 = await harness.session(PROVIDER)
    denied_2 = await harness.consent(
        await harness.start(browser_2, created_2["connect_url"]), login_hint="deny"
    )
    r = await browser_2.get(relative(with_params(denied_2, error="evil<script>")))
    assert query_of(r.headers["location"])["error"] == "provider_error"
    _assert_static_page(
        await harness.browser().get(f"/oauth/callback/{PROVIDER}?error=access_denied&state=zz")
    )
    await _nothing_left(harness)


async def test_r01_shopify_callback_signature_is_verified_before_the_state(
    harness: FlowHarness,
) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for("shopify", config={"shop": "acme-store"})
    assert "hmac" in query_of(callback)
    tampered = with_params(callback, shop="evil-store.myshopify.com")
    _assert_static_page(await browser.get(relative(tampered)))
    unsigned = {k: v for k, v in query_of(callback).items() if k != "hmac"}
    _assert_static_page(await browser.get(urlsplit(callback).path, params=unsigned))
    assert harness.spy.token_requests() == []
    # Rejected before the state was looked at: the genuine callback still completes.
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["status"] == "connected"
    assert len(harness.spy.token_requests()) == 1


async def test_r05_tampered_verifier_ciphertext_fails_closed(harness: FlowHarness) -> None:
    from app.vault.models import VaultSecret

    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    async with harness.app.state.sessionmaker() as s, s.begin():
        row = await s.scalar(select(VaultSecret).where(VaultSecret.owner_type == "oauth_flow"))
        assert row is not None
        row.ciphertext = bytes([row.ciphertext[0] ^ 1]) + row.ciphertext[1:]
    r = await browser.get(relative(callback))
    assert r.status_code == 303
    assert query_of(r.headers["location"])["error"] == "vault_error"
    assert (await harness.session_status(created["id"]))["status"] == "failed"
    await _nothing_left(harness)


async def test_r10_issuers_must_be_unique_and_are_pinned_in_the_flow(
    harness: FlowHarness,
) -> None:
    from app.config import Settings
    from app.providers.errors import ProviderConfigError
    from app.providers.startup import build_registry

    shared = {"issuer": "https://as.example.com", "client_id": "c", "client_secret": "s"}
    with pytest.raises(ProviderConfigError) as info:
        build_registry(
            Settings(mode="sandbox", oauth={"apps": {"hubspot": shared, "asana": shared}})
        )
    assert any("issuer" in p for p in info.value.problems)
    # The issuer is pinned per flow at start; the callback compares against the stored one.
    await harness.end_user()
    _browser, callback, created = await harness.callback_url_for(PROVIDER)
    flow = await _flow(harness, created["id"])
    assert flow.issuer == harness.app.state.providers.get(PROVIDER).endpoints({}).issuer
    assert query_of(callback)["iss"] == flow.issuer
    issuers = [
        p.endpoints({}).issuer
        for p in harness.app.state.providers.configured()
        if not p.input_specs
    ]
    assert len(issuers) == len(set(issuers))


async def test_r21_disconnect_revokes_and_shreds_the_grant(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    _access, refresh_token = await harness.stored_tokens(connection_id)
    assert refresh_token
    deleted = await harness.client.delete(
        f"/v1/connections/{connection_id}", headers=harness.headers
    )
    assert deleted.status_code in (200, 202, 204), deleted.text
    from app.providers.client import refresh
    from app.providers.errors import OAuthProviderError
    from app.vault.models import VaultSecret
    from app.vault.secret import Secret

    provider = harness.app.state.providers.get(PROVIDER)
    endpoints = provider.endpoints({})
    with pytest.raises(OAuthProviderError) as info:
        await refresh(
            provider,
            refresh_token=Secret(refresh_token),
            token_endpoint=endpoints.token_url,
            credentials=await harness.app.state.providers.credentials(None, PROVIDER),
            issuer=endpoints.issuer,
            transport=harness.app.state.outbound_transport,
        )
    assert info.value.error_code == "invalid_grant"
    assert await harness.count(VaultSecret, VaultSecret.owner_id == connection_id) == 0


async def test_r01_repeated_callback_parameters_are_rejected(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    path, query = urlsplit(callback).path, urlsplit(callback).query
    for extra in ("state=" + "x" * 43, "code=injected", "iss=https://evil.example"):
        _assert_static_page(await browser.get(f"{path}?{query}&{extra}"))
    assert harness.spy.token_requests() == []
    # Not consumed by the rejected attempts: the genuine callback still completes.
    r = await browser.get(relative(callback))
    assert query_of(r.headers["location"])["status"] == "connected"


class _PatchTokenBody(httpx.AsyncBaseTransport):
    """An authorization server whose token answer carries ``patch`` (malformed fields)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, patch: dict[str, Any]) -> None:
        self.inner = inner
        self.patch = patch

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/token") or response.status_code != 200:
            return response
        body = json.loads(await response.aread())
        return httpx.Response(200, json={**body, **self.patch}, request=request)


@pytest.mark.parametrize(
    "patch",
    [
        {"expires_in": [3600]},
        {"expires_in": {"s": 1}},
        {"expires_at": ["soon"]},
        {"expires_in": 10**12},
    ],
)
async def test_r12_malformed_expiry_in_token_response_fails_the_flow_cleanly(
    harness: FlowHarness, patch: dict[str, Any]
) -> None:
    """A token answer whose ``expires_in``/``expires_at`` is not a number once crashed the
    callback (500) after the state was consumed, leaving the session pending and the PKCE
    verifier stored; it must be an allow-listed error redirect that leaves nothing behind."""
    from app.vault.models import VaultSecret

    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    harness.app.state.outbound_transport = _PatchTokenBody(harness.spy, patch)
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    location = query_of(r.headers["location"])
    assert location["status"] == "error"
    assert location["error"] == "invalid_token_response"
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0
    assert rows["fivetran_connections"] == 0
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "invalid_token_response"


@pytest.mark.parametrize(
    "return_to",
    [
        # Python's IDNA 2003 maps "ß" to "ss"; browsers (UTS #46, non-transitional) keep it
        # and go to xn--cla-hia.example, another registrable domain.
        "https://claß.example/connected",
        "https://CLAß.example/connected",
        # Final sigma: IDNA 2003 maps it to σ, browsers keep ς.
        "https://ς.example/connected",
        # urlsplit raises ValueError for these (NFKC-normalised '/', '#' in the authority).
        "https://evil.com\uff0f@app.example.com/",
        "https://app.example.com\uff03.evil.com/",
        "https://[::1/",
    ],
)
async def test_r22_return_to_host_the_browser_reads_differently_is_rejected(
    make_flow_harness: Any, settings_factory: Any, return_to: str
) -> None:
    """The allow-list check must see the host a browser will go to: a host that IDNA 2003
    rewrites (so it matched an allow-listed origin) is refused, and so is a value that
    ``urlsplit`` cannot parse (422, never a 500)."""
    harness = await make_flow_harness(
        settings_factory(
            api={"allowed_origins": [APP_ORIGIN, "https://class.example", "https://σ.example"]}
        )
    )
    await harness.end_user()
    before = await harness.rows()
    r = await harness.create_session(PROVIDER, return_to=return_to)
    assert r.status_code == 422, (return_to, r.status_code, r.text)
    assert r.json()["field"] == "return_to"
    assert await harness.rows() == before
    ok = await harness.create_session(PROVIDER, return_to="https://class.example/connected")
    assert ok.status_code == 201, ok.text


async def test_vault_failure_while_storing_tokens_fails_the_session_cleanly(
    harness: FlowHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key provider fails (e.g. a KMS outage) when the callback seals the tokens: after
    the state was consumed this once answered a JSON 503 to the browser and left the session
    pending for ever (the sweep skips consumed flows) with the PKCE verifier stored."""
    from app.vault.errors import KeyProviderUnavailable
    from app.vault.models import VaultSecret

    await harness.end_user()
    browser, callback, created = await harness.callback_url_for(PROVIDER)
    vault = harness.app.state.vault
    real_put = vault.put

    async def failing_put(session: Any, **kw: Any) -> None:
        if kw.get("owner_type") == "connection":
            raise KeyProviderUnavailable("KMS Encrypt failed (ThrottlingException)")
        await real_put(session, **kw)

    monkeypatch.setattr(vault, "put", failing_put)
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    location = query_of(r.headers["location"])
    assert location["status"] == "error" and location["error"] == "vault_error"
    rows = await harness.rows()
    assert rows["connection_secrets"] == 0 and rows["grants"] == 0
    assert rows["fivetran_connections"] == 0
    assert await harness.count(VaultSecret, VaultSecret.owner_type == "oauth_flow") == 0
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "vault_error"
