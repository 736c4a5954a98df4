"""Token client against the sandbox authorization server (R5, R7, R12, R13, R14, R19, R21)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from app.config import Settings
from app.db import utcnow
from app.providers import (
    OAuthProviderError,
    build_authorization_url,
    code_challenge,
    refresh,
    revoke,
)
from app.providers.catalog_data import hand_written_keys
from app.providers.errors import CallbackVerificationError
from app.providers.startup import build_registry
from tests.fixtures.providers import Harness

# The hand-written providers (every quirk hook); all 142 services run end to end in
# test_all_providers_flow.py on one shared app.
ALL_PROVIDERS = hand_written_keys()


def _query(url: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        out.setdefault(k, []).append(v)
    return out


# --- authorization URL ---------------------------------------------------------------------


@pytest.mark.db_independent
def test_authorization_url_carries_s256_challenge_exact_redirect_and_extras() -> None:
    registry = build_registry(Settings(mode="production"))
    verifier = "v" * 43 + "-._~abc"
    redirect = "https://connect.example.com/oauth/callback/google_ads"
    url = build_authorization_url(
        registry.get("google_ads"),
        client_id="cid",
        state="state-1",
        code_verifier=verifier,
        redirect_uri=redirect,
    )
    assert url.startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    q = _query(url)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert q["code_challenge"] == [expected.decode().rstrip("=")]
    assert "=" not in q["code_challenge"][0]
    assert q["code_challenge"][0] == code_challenge(verifier)
    assert q["code_challenge_method"] == ["S256"]
    assert q["redirect_uri"] == [redirect]
    assert q["response_type"] == ["code"]
    assert q["client_id"] == ["cid"]
    assert q["state"] == ["state-1"]
    assert q["access_type"] == ["offline"] and q["prompt"] == ["consent"]
    assert q["include_granted_scopes"] == ["true"]
    # the data scope, plus the OpenID scopes of the account identity (id_token sub/email)
    assert q["scope"] == ["https://www.googleapis.com/auth/adwords openid email"]
    assert verifier not in url


@pytest.mark.db_independent
def test_authorization_url_provider_specifics() -> None:
    registry = build_registry(Settings(mode="production"))
    common = {"state": "s", "code_verifier": "x" * 64, "redirect_uri": "https://c.example/cb"}
    bing = _query(build_authorization_url(registry.get("bingads"), client_id="c", **common))
    assert bing["response_mode"] == ["query"] and bing["prompt"] == ["login"]
    assert bing["scope"] == ["https://ads.microsoft.com/msads.manage offline_access openid profile"]
    tiktok_url = build_authorization_url(registry.get("tiktok_ads"), client_id="app", **common)
    tiktok = _query(tiktok_url)
    assert tiktok["app_id"] == ["app"] and "client_id" not in tiktok
    assert "code_challenge" not in tiktok  # PKCE off for this provider
    shop_url = build_authorization_url(
        registry.get("shopify"), client_id="c", inputs={"shop": "acme-store"}, **common
    )
    assert shop_url.startswith("https://acme-store.myshopify.com/admin/oauth/authorize?")
    assert _query(shop_url)["scope"] == ["read_orders,read_products,read_customers,read_inventory"]
    fb = _query(build_authorization_url(registry.get("facebook_ads"), client_id="c", **common))
    assert fb["scope"] == ["ads_read,business_management"]
    narrowed = _query(
        build_authorization_url(registry.get("hubspot"), client_id="c", scopes=["oauth"], **common)
    )
    assert narrowed["scope"] == ["oauth"]
    with pytest.raises(ValueError):
        build_authorization_url(
            registry.get("hubspot"),
            client_id="c",
            state="s",
            code_verifier=None,
            redirect_uri="https://c.example/cb",
        )


# --- code exchange for every provider ------------------------------------------------------


@pytest.mark.parametrize("key", ALL_PROVIDERS)
async def test_code_exchange_for_every_provider(harness: Harness, key: str) -> None:
    auth = await harness.authorize(key)
    provider = auth.provider
    assert auth.params["iss"] == auth.endpoints.issuer  # RFC 9207 on the callback
    assert auth.params["state"] == auth.state
    provider.verify_callback(auth.params, auth.credentials.client_secret, auth.inputs)
    result = await harness.exchange(auth)
    assert result.provider_key == key
    assert result.issuer == auth.endpoints.issuer
    assert result.client_id == f"sandbox-{key}"
    assert result.access_token is not None
    assert (result.refresh_token is not None) == provider.requires_refresh_token
    assert "sbx-" not in repr(result)
    introspection = await harness.introspect(key, result.access_token.reveal())
    assert introspection["active"] is True
    assert introspection["client_id"] == f"sandbox-{key}"
    # Exactly one token request (two for Facebook's long-lived exchange), client auth as
    # the provider requires.
    token_calls = [r for r in harness.recorder.requests if r.url.path.endswith("/token")]
    assert len(token_calls) == (2 if key == "facebook_ads" else 1)
    first = token_calls[0]
    body = first.content.decode()
    if provider.token_auth_method == "client_secret_basic":
        assert first.headers["authorization"].startswith("Basic ")
        assert "client_secret" not in body
    else:
        assert "authorization" not in first.headers
        assert "secret" in body
    if provider.spec.pkce:
        assert dict(parse_qsl(body))["code_verifier"] == auth.verifier
    else:
        assert "code_verifier" not in body
    assert first.extensions.get("pbf_target") == f"oauth:{key}"


@pytest.mark.db_independent
def test_both_client_authentication_methods_are_exercised() -> None:
    registry = build_registry(Settings(mode="sandbox"))
    methods = {p.token_auth_method for p in registry.all()}
    assert {"client_secret_basic", "client_secret_post", "json_body"} <= methods


async def test_provider_metadata_is_kept(harness: Harness) -> None:
    _, sf = await harness.connect("salesforce")
    assert sf.metadata["instance_url"].startswith("https://")
    assert sf.expires_at is None  # Salesforce sends no expires_in
    _, pd = await harness.connect("pipedrive")
    assert pd.metadata["api_domain"] == "https://sandbox-company.pipedrive.com"
    auth, qb = await harness.connect("quickbooks")
    assert qb.metadata["realm_id"] == auth.params["realmId"]
    _, shop = await harness.connect("shopify")
    assert shop.metadata["shop"] == "acme-store.myshopify.com"
    _, tt = await harness.connect("tiktok_ads")
    assert tt.metadata["advertiser_ids"] == "7000000000001,7000000000002"
    tiktok_request = harness.recorder.requests[-1]
    assert tiktok_request.headers["content-type"] == "application/json"
    assert set(__import__("json").loads(tiktok_request.content)) == {
        "app_id",
        "secret",
        "auth_code",
    }
    _, g = await harness.connect("google_ads")
    assert g.expires_at is not None and g.expires_at > utcnow()
    assert g.granted_scope == "https://www.googleapis.com/auth/adwords openid email"


async def test_facebook_long_lived_exchange(harness: Harness) -> None:
    _, fb = await harness.connect("facebook_ads")
    assert fb.refresh_token is None
    assert fb.expires_at is not None and fb.expires_at > utcnow() + timedelta(days=59)
    grants = [r["grant_type"] for r in await harness.token_requests()]
    assert grants == ["authorization_code", "fb_exchange_token"]


async def test_shopify_callback_hmac(harness: Harness) -> None:
    auth = await harness.authorize("shopify")
    secret = auth.credentials.client_secret
    auth.provider.verify_callback(auth.params, secret, {"shop": "acme-store"})
    tampered = {**auth.params, "shop": "evil.myshopify.com"}
    with pytest.raises(CallbackVerificationError):
        auth.provider.verify_callback(tampered, secret, None)
    with pytest.raises(CallbackVerificationError):
        auth.provider.verify_callback({**auth.params, "hmac": ""}, secret, None)
    with pytest.raises(CallbackVerificationError):
        auth.provider.verify_callback(auth.params, secret, {"shop": "other-store"})


# --- client authentication (R13) -------------------------------------------------------------


async def test_rfc6749_basic_encoding_accepted_and_authlib_default_rejected(
    harness: Harness,
) -> None:
    auth = await harness.authorize("zoom")
    secret = auth.credentials.client_secret.reveal()
    assert "+" in secret and "%" in secret and ":" in secret
    raw = auth.provider.__class__(
        key="zoom",
        spec=auth.provider.spec.model_copy(update={"token_auth_method": "raw_basic"}),
        sandboxed=True,
    )
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth, provider=raw)
    assert info.value.error_code == "invalid_client"
    header = harness.recorder.requests[-1].headers["authorization"]
    assert base64.b64decode(header.split()[1]).decode() == f"sandbox-zoom:{secret}"
    # The same (unused) code with the RFC 6749 §2.3.1 encoding succeeds.
    result = await harness.exchange(auth)
    assert result.access_token is not None
    header = harness.recorder.requests[-1].headers["authorization"]
    assert "%2B" in base64.b64decode(header.split()[1]).decode()


async def test_post_only_provider_sends_no_authorization_header(harness: Harness) -> None:
    await harness.connect("hubspot")
    request = harness.recorder.requests[-1]
    assert "authorization" not in request.headers
    body = dict(parse_qsl(request.content.decode()))
    assert body["client_id"] == "sandbox-hubspot"
    assert (
        body["client_secret"] == (await harness.registry.credentials(None, "hubspot"))[1].reveal()
    )


async def test_wrong_client_secret_is_invalid_client(harness: Harness) -> None:
    from app.providers import AppCredentials
    from app.vault.secret import Secret

    auth = await harness.authorize("hubspot")
    wrong = AppCredentials("sandbox-hubspot", Secret("nope"), {})
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth, credentials=wrong)
    assert info.value.error_code == "invalid_client"


# --- refresh, rotation, reuse detection, revocation -------------------------------------------


async def test_refresh_with_rotation_and_reuse_detection(harness: Harness) -> None:
    auth, first = await harness.connect("zoom")
    creds, endpoints = auth.credentials, auth.endpoints
    assert first.refresh_token is not None
    second = await refresh(
        auth.provider,
        refresh_token=first.refresh_token,
        token_endpoint=endpoints.token_url,
        credentials=creds,
        issuer=endpoints.issuer,
        transport=harness.recorder,
    )
    assert second.rotated is True
    assert second.refresh_token is not None and second.refresh_token != first.refresh_token
    assert "scope" not in dict(parse_qsl(harness.recorder.requests[-1].content.decode()))
    # Reuse of the old refresh token: invalid_grant, and the whole grant is revoked.
    with pytest.raises(OAuthProviderError) as info:
        await refresh(
            auth.provider,
            refresh_token=first.refresh_token,
            token_endpoint=endpoints.token_url,
            credentials=creds,
            issuer=endpoints.issuer,
            transport=harness.recorder,
        )
    assert info.value.error_code == "invalid_grant" and info.value.terminal
    assert (await harness.introspect("zoom", second.refresh_token.reveal()))["active"] is False
    assert (await harness.introspect("zoom", second.access_token.reveal()))["active"] is False  # type: ignore[union-attr]
    with pytest.raises(OAuthProviderError):
        await refresh(
            auth.provider,
            refresh_token=second.refresh_token,
            token_endpoint=endpoints.token_url,
            credentials=creds,
            issuer=endpoints.issuer,
            transport=harness.recorder,
        )


async def test_refresh_without_rotation_keeps_the_refresh_token(harness: Harness) -> None:
    auth, first = await harness.connect("hubspot")
    assert first.refresh_token is not None
    again = await refresh(
        auth.provider,
        refresh_token=first.refresh_token,
        token_endpoint=auth.endpoints.token_url,
        credentials=auth.credentials,
        issuer=auth.endpoints.issuer,
        transport=harness.recorder,
    )
    assert again.rotated is False
    assert again.refresh_token == first.refresh_token
    assert again.access_token != first.access_token
    assert "scope" not in dict(parse_qsl(harness.recorder.requests[-1].content.decode()))
    assert (await harness.introspect("hubspot", first.refresh_token.reveal()))["active"] is True


async def test_bingads_refresh_repeats_scope(harness: Harness) -> None:
    auth, first = await harness.connect("bingads")
    assert first.refresh_token is not None
    again = await refresh(
        auth.provider,
        refresh_token=first.refresh_token,
        token_endpoint=auth.endpoints.token_url,
        credentials=auth.credentials,
        issuer=auth.endpoints.issuer,
        transport=harness.recorder,
    )
    body = dict(parse_qsl(harness.recorder.requests[-1].content.decode()))
    assert body["scope"] == "https://ads.microsoft.com/msads.manage offline_access openid profile"
    assert again.rotated is True


@pytest.mark.parametrize("key", ["google_ads", "zoom", "pipedrive"])
async def test_revocation_then_introspection_inactive(harness: Harness, key: str) -> None:
    auth, result = await harness.connect(key)
    assert result.refresh_token is not None and result.access_token is not None
    revoked = await revoke(
        auth.provider,
        result.refresh_token,
        revocation_endpoint=auth.endpoints.revocation_url,
        credentials=auth.credentials,
        transport=harness.recorder,
    )
    assert revoked is True
    request = harness.recorder.requests[-1]
    if auth.provider.revocation_auth_method == "client_secret_post":
        assert "authorization" not in request.headers
    else:
        assert request.headers["authorization"].startswith("Basic ")
    assert (await harness.introspect(key, result.refresh_token.reveal()))["active"] is False
    assert (await harness.introspect(key, result.access_token.reveal()))["active"] is False
    with pytest.raises(OAuthProviderError) as info:
        await refresh(
            auth.provider,
            refresh_token=result.refresh_token,
            token_endpoint=auth.endpoints.token_url,
            credentials=auth.credentials,
            issuer=auth.endpoints.issuer,
            transport=harness.recorder,
        )
    assert info.value.error_code == "invalid_grant"


@pytest.mark.db_independent
async def test_revoke_without_endpoint_returns_false() -> None:
    from app.providers import AppCredentials
    from app.vault.secret import Secret

    provider = build_registry(Settings(mode="production")).get("hubspot")
    creds = AppCredentials("c", Secret("s"), {})
    assert await revoke(provider, Secret("t"), revocation_endpoint=None, credentials=creds) is False


# --- token response validation (R12) and redirects (R14) -----------------------------------


@pytest.mark.parametrize(
    ("kind", "error_code"),
    [
        ("no_refresh_token", "missing_refresh_token"),
        ("html_502", "server_error"),
        ("error_200", "invalid_grant"),
        ("narrow_scope", "insufficient_scope"),
        ("redirect_307", "token_endpoint_redirect"),
        ("missing_token_type", "invalid_token_response"),
    ],
)
async def test_misbehaving_token_endpoint_is_rejected(
    harness: Harness, kind: str, error_code: str
) -> None:
    auth = await harness.authorize("google_ads")
    await harness.misbehave("google_ads", kind)
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth)
    assert info.value.error_code == error_code
    assert info.value.provider_key == "google_ads"
    # Exactly one request reached the token endpoint (a 307 is never followed).
    assert len(harness.recorder.requests) == 1
    assert len(await harness.token_requests()) == 1
    if kind == "no_refresh_token":
        assert "access_type=offline&prompt=consent" in str(info.value)
    if kind == "narrow_scope":
        assert "adwords" in str(info.value)


async def test_string_expires_in_is_normalised(harness: Harness) -> None:
    auth = await harness.authorize("hubspot")
    await harness.misbehave("hubspot", "string_expires_in")
    result = await harness.exchange(auth)
    assert result.expires_at is not None and result.expires_at > utcnow()


async def test_google_without_offline_access_gets_no_refresh_token(harness: Harness) -> None:
    """The sandbox emulates Google: a refresh token only with access_type=offline."""
    auth = await harness.authorize("google_analytics_4")
    without = auth.provider.__class__(
        key=auth.provider.key,
        spec=auth.provider.spec.model_copy(update={"extra_authorization_params": {}}),
        sandboxed=True,
    )
    url = build_authorization_url(
        without,
        client_id=auth.credentials.client_id,
        state="s" * 43,
        code_verifier=auth.verifier,
        redirect_uri=auth.redirect_uri,
        login_hint="auto",
    )
    response = await harness.client.get(url)
    params = dict(parse_qsl(urlsplit(response.headers["location"]).query))
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth, code=params["code"])
    assert info.value.error_code == "missing_refresh_token"
    assert "access_type=offline&prompt=consent" in info.value.message


async def test_provider_error_description_is_never_echoed(harness: Harness) -> None:
    auth = await harness.authorize("hubspot")
    with pytest.raises(OAuthProviderError) as info:
        await harness.exchange(auth, code_verifier="w" * 60)
    assert info.value.error_code == "invalid_grant"
    assert "challenge" not in str(info.value).lower()


@pytest.mark.parametrize("key", ALL_PROVIDERS)
async def test_token_result_becomes_a_valid_fivetran_create_payload(
    harness: Harness, key: str
) -> None:
    """Every provider's auth/config mapping passes the Fivetran payload validator."""
    from app.fivetran.payloads import build_create_payload

    auth, result = await harness.connect(key)
    provider = auth.provider
    block = provider.fivetran_auth(result, auth.credentials)
    config = provider.fivetran_config(result, {**(auth.inputs or {}), "schema": "ignored"})
    body = build_create_payload(
        provider.fivetran_service,
        group_id="group_1",
        schema=f"{key}_schema",
        config=config,
        auth=block,
        table="sheet_table" if key == "google_sheets" else None,
    )
    handed = body["auth"]
    if "refresh_token" in provider.spec.fivetran.auth:
        assert handed["refresh_token"] == result.refresh_token.reveal()  # type: ignore[union-attr]
    if "access_token" in provider.spec.fivetran.auth:
        assert handed["access_token"] == result.access_token.reveal()  # type: ignore[union-attr]
    if "client_access" in provider.spec.fivetran.auth:
        assert handed["client_access"]["client_id"] == f"sandbox-{key}"
    if key == "quickbooks":
        assert handed["realm_id"] == auth.params["realmId"]
