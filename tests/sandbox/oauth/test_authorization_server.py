"""The sandbox authorization server: strict like a real AS (R5, R7, R9, R11, R24)."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

import httpx
import pytest

from app.config import Settings
from app.providers import OAuthProviderError, code_challenge
from app.sandbox.oauth import create_sandbox_oauth_app, introspect_token
from tests.fixtures.providers import BASE_URL, Harness

AUTHORIZE = "/sandbox/oauth/hubspot/authorize"
REDIRECT = f"{BASE_URL}/oauth/callback/hubspot"


def params(**overrides: Any) -> dict[str, str]:
    verifier = "v" * 64
    values = {
        "response_type": "code",
        "client_id": "sandbox-hubspot",
        "redirect_uri": REDIRECT,
        "scope": "oauth",
        "state": "st-1",
        "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256",
        "login_hint": "auto",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def location_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return dict(parse_qsl(urlsplit(response.headers["location"]).query))


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_metadata_advertises_iss_and_s256(client: httpx.AsyncClient) -> None:
    r = await client.get("/sandbox/oauth/zoom/.well-known/oauth-authorization-server")
    meta = r.json()
    assert meta["issuer"] == f"{BASE_URL}/sandbox/oauth/zoom"
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert meta["response_types_supported"] == ["code"]


async def test_success_and_error_responses_carry_iss(client: httpx.AsyncClient) -> None:
    ok = location_params(await client.get(AUTHORIZE, params=params()))
    assert ok["iss"] == f"{BASE_URL}/sandbox/oauth/hubspot" and ok["state"] == "st-1"
    assert ok["code"]
    denied = location_params(await client.get(AUTHORIZE, params=params(login_hint="deny")))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "st-1" and denied["iss"] == ok["iss"]
    assert "code" not in denied


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},  # defaults to plain: rejected
        {"code_challenge": "v" * 64, "code_challenge_method": "plain"},
        {"code_challenge": None, "code_challenge_method": None},  # PKCE required
    ],
)
async def test_plain_or_missing_pkce_is_rejected(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    got = location_params(await client.get(AUTHORIZE, params=params(**overrides)))
    assert got["error"] == "invalid_request"
    assert "code" not in got
    assert got["iss"].endswith("/sandbox/oauth/hubspot")


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": f"{BASE_URL}/oauth/callback/zoom"},
        {"redirect_uri": REDIRECT + "?next=https://evil.example"},
        {"redirect_uri": REDIRECT + "/"},
        {"redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": None},
        {"client_id": "sandbox-zoom"},
        {"client_id": "nobody"},
    ],
)
async def test_bad_redirect_uri_or_client_is_400_without_redirect(
    client: httpx.AsyncClient, overrides: dict[str, Any]
) -> None:
    r = await client.get(AUTHORIZE, params=params(**overrides))
    assert r.status_code == 400
    assert "location" not in r.headers


async def test_implicit_response_type_is_refused(client: httpx.AsyncClient) -> None:
    got = location_params(await client.get(AUTHORIZE, params=params(response_type="token")))
    assert got["error"] == "unsupported_response_type"
    assert "access_token" not in got


async def test_consent_page_names_client_and_scopes_then_approve(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get(AUTHORIZE, params=params(login_hint=None))
    assert page.status_code == 200
    assert "HubSpot" in page.text and "sandbox-hubspot" in page.text
    assert "<code>oauth</code>" in page.text
    assert "Approve" in page.text and "Deny" in page.text and "simulation" in page.text
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    approved = await client.post(
        AUTHORIZE,
        content=urlencode({"consent_id": consent_id, "decision": "approve"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    got = location_params(approved)
    assert got["code"] and got["state"] == "st-1" and got["iss"]
    # The consent is single-use.
    again = await client.post(
        AUTHORIZE,
        content=urlencode({"consent_id": consent_id, "decision": "approve"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 400 and "location" not in again.headers


async def test_consent_page_deny(client: httpx.AsyncClient) -> None:
    page = await client.get(AUTHORIZE, params=params(login_hint=None))
    consent_id = re.search(r'name="consent_id" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    denied = await client.post(
        AUTHORIZE,
        content=urlencode({"consent_id": consent_id, "decision": "deny"}),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    got = location_params(denied)
    assert got["error"] == "access_denied" and got["state"] == "st-1" and got["iss"]


async def test_auto_approve_setting(settings_factory: Any) -> None:
    from app.main import create_app

    app = create_app(settings_factory(oauth={"sandbox_auto_approve": True}))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE_URL
        ) as c:
            got = location_params(await c.get(AUTHORIZE, params=params(login_hint=None)))
            assert got["code"]


# --- token endpoint ---------------------------------------------------------------------------


async def _token(client: httpx.AsyncClient, **form: str) -> httpx.Response:
    secret = "sbx+hubspot%2Fs3cr3t:with+special%chars"
    body = {"client_id": "sandbox-hubspot", "client_secret": secret, **form}
    return await client.post("/sandbox/oauth/hubspot/token", data=body)


async def test_wrong_verifier_and_wrong_redirect_are_invalid_grant(
    client: httpx.AsyncClient,
) -> None:
    code = location_params(await client.get(AUTHORIZE, params=params()))["code"]
    base = {"grant_type": "authorization_code", "code": code}
    r = await _token(client, **base, redirect_uri=REDIRECT, code_verifier="w" * 64)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = await _token(
        client, **base, redirect_uri=f"{BASE_URL}/oauth/callback/zoom", code_verifier="v" * 64
    )
    assert r.json()["error"] == "invalid_grant"
    r = await _token(client, **base, redirect_uri=REDIRECT)
    assert r.json()["error"] == "invalid_request"  # verifier required once a challenge was sent
    r = await _token(client, **base, redirect_uri=REDIRECT, code_verifier="v" * 64)
    assert r.status_code == 200 and r.json()["access_token"]
    assert r.headers["cache-control"] == "no-store"


async def test_replayed_code_is_refused_and_revokes_the_grant(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    code = location_params(await client.get(AUTHORIZE, params=params()))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": "v" * 64,
    }
    first = await _token(client, **form)
    assert first.status_code == 200
    tokens = first.json()
    assert (await harness.introspect("hubspot", tokens["access_token"]))["active"] is True
    replay = await _token(client, **form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (await harness.introspect("hubspot", tokens["access_token"]))["active"] is False
    assert (await harness.introspect("hubspot", tokens["refresh_token"]))["active"] is False
    refreshed = await _token(
        client, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_replay_through_the_client_is_invalid_grant(harness: Harness) -> None:
    auth, result = await harness.connect("quickbooks")
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth)
    assert info.value.error_code == "invalid_grant"
    assert result.access_token is not None
    assert (await harness.introspect("quickbooks", result.access_token.reveal()))["active"] is False


async def test_client_authentication_method_is_enforced(client: httpx.AsyncClient) -> None:
    code = location_params(await client.get(AUTHORIZE, params=params()))["code"]
    secret = "sbx+hubspot%2Fs3cr3t:with+special%chars"
    r = await client.post(
        "/sandbox/oauth/hubspot/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "v" * 64,
        },
        headers=basic("sandbox-hubspot", secret),  # hubspot is client_secret_post
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_facebook_exchange_needs_a_live_token_of_the_same_client(
    client: httpx.AsyncClient, harness: Harness
) -> None:
    secret = "sbx+facebook_ads%2Fs3cr3t:with+special%chars"
    r = await client.post(
        "/sandbox/oauth/facebook_ads/token",
        data={
            "grant_type": "fb_exchange_token",
            "fb_exchange_token": "forged",
            "client_id": "sandbox-facebook_ads",
            "client_secret": secret,
        },
    )
    assert r.json()["error"] == "invalid_grant"
    _, hubspot = await harness.connect("hubspot")
    r = await client.post(
        "/sandbox/oauth/facebook_ads/token",
        data={
            "grant_type": "fb_exchange_token",
            "fb_exchange_token": hubspot.access_token.reveal(),  # type: ignore[union-attr]
            "client_id": "sandbox-facebook_ads",
            "client_secret": secret,
        },
    )
    assert r.json()["error"] == "invalid_grant"


async def test_control_api(client: httpx.AsyncClient, harness: Harness) -> None:
    r = await client.post(
        "/sandbox/oauth/_control/misbehave",
        json={"provider_key": "*", "kind": "nonsense"},
    )
    assert r.status_code == 422
    await harness.connect("asana")
    assert [i["provider_key"] for i in await harness.token_requests()] == ["asana"]
    assert (await client.post("/sandbox/oauth/_control/reset")).status_code == 200
    assert await harness.token_requests() == []


# --- introspection helper and standalone app ------------------------------------------------


async def test_introspect_token_helper(app: Any, harness: Harness) -> None:
    _, result = await harness.connect("pinterest_ads")
    http, base = app.state.http, app.state.settings.public_base_url
    assert result.refresh_token is not None
    assert await introspect_token(http, base, "pinterest_ads", result.refresh_token) is True
    assert await introspect_token(http, base, "pinterest_ads", "sbx-at-unknown") is False
    assert await introspect_token(http, base, "zoom", result.refresh_token) is False  # other client
    assert await introspect_token(http, base, "no_such_provider", "x") is False


@pytest.mark.db_independent
async def test_standalone_app_factory() -> None:
    settings = Settings(mode="sandbox", public_base_url="http://127.0.0.1:9999")
    sub = create_sandbox_oauth_app(settings)
    transport = httpx.ASGITransport(app=sub)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:9999") as c:
        verifier = secrets.token_urlsafe(64)
        r = await c.get(
            "/sandbox/oauth/asana/authorize",
            params={
                "response_type": "code",
                "client_id": "sandbox-asana",
                "redirect_uri": "http://127.0.0.1:9999/oauth/callback/asana",
                "state": "s",
                "code_challenge": code_challenge(verifier),
                "code_challenge_method": "S256",
                "login_hint": "auto",
            },
        )
        got = location_params(r)
        assert got["iss"] == "http://127.0.0.1:9999/sandbox/oauth/asana"
        token = await c.post(
            "/sandbox/oauth/asana/token",
            data={
                "grant_type": "authorization_code",
                "code": got["code"],
                "redirect_uri": "http://127.0.0.1:9999/oauth/callback/asana",
                "code_verifier": verifier,
                "client_id": "sandbox-asana",
                "client_secret": "sbx+asana%2Fs3cr3t:with+special%chars",
            },
        )
        assert token.status_code == 200 and token.json()["refresh_token"]
        meta = await c.get("/sandbox/oauth/asana/.well-known/oauth-authorization-server")
        assert meta.json()["token_endpoint"] == "http://127.0.0.1:9999/sandbox/oauth/asana/token"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("authorize_omit_iss", None), ("authorize_wrong_iss", "https://evil-as.example")],
)
async def test_authorize_misbehaviour_for_mix_up_tests(
    client: httpx.AsyncClient, kind: str, expected: str | None
) -> None:
    r = await client.post(
        "/sandbox/oauth/_control/misbehave", json={"provider_key": "hubspot", "kind": kind}
    )
    assert r.status_code == 200
    got = location_params(await client.get(AUTHORIZE, params=params()))
    assert got.get("iss") == expected
    assert got["code"]
    # One-shot: the next response is normal again.
    normal = location_params(await client.get(AUTHORIZE, params=params()))
    assert normal["iss"] == f"{BASE_URL}/sandbox/oauth/hubspot"


async def test_expired_code_is_invalid_grant(app: Any, client: httpx.AsyncClient) -> None:
    code = location_params(await client.get(AUTHORIZE, params=params()))["code"]
    app.state.sandbox_oauth.store.codes[code].created_at -= 61  # codes live 60 s
    r = await _token(
        client,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier="v" * 64,
    )
    assert r.json()["error"] == "invalid_grant"


@pytest.mark.db_independent
def test_sandbox_accepts_a_plain_http_public_base_url() -> None:
    from app.providers.startup import build_registry

    registry = build_registry(Settings(mode="sandbox", public_base_url="http://pbf.lan:8000"))
    assert (
        registry.get("zoom").endpoints().token_url == "http://pbf.lan:8000/sandbox/oauth/zoom/token"
    )


async def test_unknown_provider_is_404_page_for_browsers_json_for_clients(
    client: httpx.AsyncClient,
) -> None:
    base = "/sandbox/oauth/no_such_provider"
    for r in (
        await client.get(f"{base}/authorize", params={"client_id": "x"}),
        await client.post(f"{base}/authorize", data={"consent_id": "x"}),
    ):
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("text/html")
        assert "unknown_provider" in r.text and r.headers["cache-control"] == "no-store"
    for r in (
        await client.post(f"{base}/token", data={"grant_type": "authorization_code"}),
        await client.post(f"{base}/introspect", data={"token": "x"}),
        await client.post(f"{base}/revoke", data={"token": "x"}),
        await client.get(f"{base}/.well-known/oauth-authorization-server"),
    ):
        assert r.status_code == 404
        assert r.json() == {
            "error": "invalid_request",
            "error_description": "unknown sandbox provider",
        }
        assert r.headers["cache-control"] == "no-store"
