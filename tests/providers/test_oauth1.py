"""The OAuth 1.0a providers (X / Twitter): configuration, and the authlib client against the
sandbox OAuth 1.0a server, whose signature checks are real (a wrong secret is refused)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.config import Settings
from app.providers import ProviderConfigError
from app.providers.errors import OAuthProviderError
from app.providers.oauth1 import (
    OAuth1Credentials,
    fetch_access_token,
    fetch_request_token,
)
from app.providers.startup import build_registry
from app.vault.secret import Secret


def test_production_twitter_app_points_at_x(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_ID", "ck")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_SECRET", "cs")
    registry = build_registry(Settings())
    twitter = registry.oauth1.get("twitter")
    assert not twitter.sandboxed
    assert twitter.endpoints().request_token_url == "https://api.twitter.com/oauth/request_token"
    assert twitter.endpoints().access_token_url == "https://api.twitter.com/oauth/access_token"
    assert twitter.credentials.client_id == "ck"
    assert registry.oauth1.find("twitter_ads") is None  # no app: not offered in production
    assert registry.find("twitter") is None  # not an OAuth 2.0 provider


def test_oauth1_app_refuses_endpoint_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_ID", "ck")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_SECRET", "cs")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__TOKEN_URL", "https://evil.example/token")
    with pytest.raises(ProviderConfigError) as info:
        build_registry(Settings())
    assert any("PBF_OAUTH__APPS__TWITTER: TOKEN_URL" in p for p in info.value.problems)


def test_oauth1_app_without_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER_ADS__CLIENT_ID", "ck")
    with pytest.raises(ProviderConfigError) as info:
        build_registry(Settings())
    assert any("PBF_OAUTH__APPS__TWITTER_ADS__CLIENT_SECRET" in p for p in info.value.problems)


async def test_wrong_consumer_secret_is_refused_by_the_sandbox_server(sandbox_app: Any) -> None:
    app, transport = sandbox_app
    provider = app.state.providers.oauth1.get("twitter")
    callback = "http://127.0.0.1:8000/oauth/callback/twitter"
    token, secret = await fetch_request_token(
        provider,
        callback_url=callback,
        request_token_url=provider.endpoints().request_token_url,
        transport=transport,
    )
    assert token and secret.reveal()
    forged = provider.__class__(
        **{
            **provider.__dict__,
            "credentials": OAuth1Credentials(provider.credentials.client_id, Secret("wrong")),
        }
    )
    with pytest.raises(OAuthProviderError) as info:
        await fetch_request_token(
            forged,
            callback_url=callback,
            request_token_url=provider.endpoints().request_token_url,
            transport=transport,
        )
    assert info.value.status == 401
    # Another callback than the registered one is refused too (exact match).
    with pytest.raises(OAuthProviderError):
        await fetch_request_token(
            provider,
            callback_url="https://evil.example/cb",
            request_token_url=provider.endpoints().request_token_url,
            transport=transport,
        )
    # A request token that was never authorized has no verifier: refused, and it is dead.
    with pytest.raises(OAuthProviderError):
        await fetch_access_token(
            provider,
            access_token_url=provider.endpoints().access_token_url,
            request_token=token,
            request_token_secret=secret,
            verifier="guess",
            transport=transport,
        )
    assert token not in app.state.sandbox_oauth.oauth1_store.temporary


@pytest.fixture
async def sandbox_app(settings_factory: Any) -> Any:
    from app.main import create_app

    application = create_app(settings_factory())
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        yield application, transport


def test_providers_list_shows_the_oauth1_route() -> None:
    listed = CliRunner().invoke(cli, ["providers", "list", "--sandbox", "--json"])
    assert listed.exit_code == 0, listed.output
    routes = {(r["key"], r["route"]) for r in json.loads(listed.output)}
    for key in ("twitter", "twitter_ads"):
        assert (key, "oauth1") in routes and (key, "credentials") in routes
    row = next(r for r in json.loads(listed.output) if r["route"] == "oauth1")
    assert "verified" in row


def _mock(handler: Any) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)  # type: ignore[no-any-return]

    return httpx.MockTransport(record), seen


def _provider(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_ID", "ck")
    monkeypatch.setenv("PBF_OAUTH__APPS__TWITTER__CLIENT_SECRET", "c+s%2F:x")
    return build_registry(Settings()).oauth1.get("twitter")


async def test_request_token_is_signed_hmac_sha1_with_our_callback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = _provider(monkeypatch)
    transport, seen = _mock(
        lambda r: httpx.Response(
            200, text="oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=true"
        )
    )
    token, secret = await fetch_request_token(
        provider,
        callback_url="https://connect.example.com/oauth/callback/twitter",
        request_token_url=provider.endpoints().request_token_url,
        transport=transport,
    )
    assert (token, secret.reveal()) == ("rt", "rs")
    header = seen[0].headers["authorization"]
    assert header.startswith("OAuth ")
    assert 'oauth_signature_method="HMAC-SHA1"' in header
    assert 'oauth_consumer_key="ck"' in header
    callback = "https%3A%2F%2Fconnect.example.com%2Foauth%2Fcallback%2Ftwitter"
    assert f'oauth_callback="{callback}"' in header
    assert str(seen[0].url) == "https://api.twitter.com/oauth/request_token"


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            httpx.Response(200, text="oauth_token=rt&oauth_token_secret=rs"),
            "invalid_token_response",
        ),
        (httpx.Response(200, text="<html>ok</html>"), "invalid_token_response"),
        (
            httpx.Response(307, headers={"location": "https://other.example/rt"}),
            "token_endpoint_redirect",
        ),
        (httpx.Response(401, text="Invalid signature"), "invalid_grant"),
        (httpx.Response(503, text="down"), "temporarily_unavailable"),
    ],
)
async def test_bad_request_token_answers_are_refused_without_a_second_request(
    monkeypatch: pytest.MonkeyPatch, answer: httpx.Response, code: str
) -> None:
    provider = _provider(monkeypatch)
    transport, seen = _mock(lambda r: answer)
    with pytest.raises(OAuthProviderError) as info:
        await fetch_request_token(
            provider,
            callback_url="https://connect.example.com/oauth/callback/twitter",
            request_token_url=provider.endpoints().request_token_url,
            transport=transport,
        )
    assert info.value.error_code == code
    assert len(seen) == 1  # never follows a redirect (R14)
    assert "Invalid signature" not in str(info.value)  # the provider's text is dropped


async def test_access_token_request_carries_the_verifier_and_request_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = _provider(monkeypatch)
    transport, seen = _mock(
        lambda r: httpx.Response(
            200,
            text="oauth_token=at&oauth_token_secret=as&user_id=42&screen_name=acme",
        )
    )
    token = await fetch_access_token(
        provider,
        access_token_url=provider.endpoints().access_token_url,
        request_token="rt",
        request_token_secret=Secret("rs"),
        verifier="v123",
        transport=transport,
    )
    assert (token.oauth_token.reveal(), token.oauth_token_secret.reveal()) == ("at", "as")
    assert token.metadata == {"user_id": "42", "screen_name": "acme"}
    header = seen[0].headers["authorization"]
    assert 'oauth_verifier="v123"' in header and 'oauth_token="rt"' in header
