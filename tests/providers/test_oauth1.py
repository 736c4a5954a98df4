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
