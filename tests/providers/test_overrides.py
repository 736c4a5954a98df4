"""Overrides and custom providers that cannot go wrong (startup refuses, naming the key)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.providers import ProviderConfigError
from app.providers.startup import build_registry, catalog_specs


def problems_of(settings: Settings) -> list[str]:
    with pytest.raises(ProviderConfigError) as info:
        build_registry(settings)
    return info.value.problems


def app(**extra: Any) -> dict[str, Any]:
    return {"client_id": "cid", "client_secret": "secret", **extra}


def salesforce_app_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production mode with a salesforce OAuth app configured through the environment."""
    monkeypatch.setenv("PBF_MODE", "production")
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__CLIENT_ID", "cid")
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__CLIENT_SECRET", "secret")


@pytest.mark.db_independent
def test_unknown_override_key_from_the_environment_refuses_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    salesforce_app_env(monkeypatch)
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__TOKEN_AUTH_METHODE", "client_secret_basic")
    problems = problems_of(Settings())
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "PBF_OAUTH__APPS__SALESFORCE__TOKEN_AUTH_METHODE: unknown setting"
    )


async def test_unknown_override_key_refuses_app_startup(settings_factory: Any) -> None:
    from app.main import create_app

    settings = settings_factory(oauth={"apps": {"hubspot": app(scope="read")}})
    application = create_app(settings)
    with pytest.raises(ProviderConfigError) as info:
        async with application.router.lifespan_context(application):
            pass  # pragma: no cover - startup must fail
    assert "PBF_OAUTH__APPS__HUBSPOT__SCOPE: unknown setting" in str(info.value)


@pytest.mark.db_independent
def test_every_provider_field_is_overridable_and_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    salesforce_app_env(monkeypatch)
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__TOKEN_AUTH_METHOD", "client_secret_basic")
    # Narrower scopes work once the required scopes are overridden too (was: no way out).
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__SCOPES", '["refresh_token", "cdp_api"]')
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__REQUIRED_SCOPES", '["cdp_api"]')
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__AUTHORIZATION_RESPONSE_ISS", "true")
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__PKCE", "false")
    provider = build_registry(Settings()).get("salesforce")
    assert provider.token_auth_method == "client_secret_basic"
    assert provider.scopes == ("refresh_token", "cdp_api")
    assert provider.required_scopes == ("cdp_api",)
    assert provider.spec.authorization_response_iss is True
    assert provider.spec.pkce is False


@pytest.mark.db_independent
def test_invalid_override_values_name_the_variable() -> None:
    problems = problems_of(
        Settings(
            mode="production",
            oauth={
                "apps": {"salesforce": app(token_auth_method="private_key_jwt")},
                "providers": {},
            },
        )
    )
    assert problems[0].startswith("PBF_OAUTH__APPS__SALESFORCE__TOKEN_AUTH_METHOD: Input should")
    # scopes without 'api' while 'api' stays required: named (__REQUIRED_SCOPES is the way out).
    problems = problems_of(
        Settings(mode="production", oauth={"apps": {"salesforce": app(scopes=["refresh_token"])}})
    )
    assert "required scope 'api' is not in scopes" in problems[0]
    problems = problems_of(
        Settings(mode="production", oauth={"apps": {"salesforce": app(fivetran_service="x")}})
    )
    assert problems[0].startswith("PBF_OAUTH__APPS__SALESFORCE__FIVETRAN_SERVICE: unknown")


@pytest.mark.db_independent
def test_placeholder_endpoints_must_be_overridden() -> None:
    problems = problems_of(
        Settings(mode="production", oauth={"apps": {"gainsight_customer_success": app()}})
    )
    assert any("__AUTHORIZATION_URL is required" in p for p in problems), problems
    assert any("__TOKEN_URL is required" in p for p in problems), problems
    registry = build_registry(
        Settings(
            mode="production",
            oauth={
                "apps": {
                    "gainsight_customer_success": app(
                        authorization_url="https://{sub_domain}.gainsightcloud.com/oauth/a",
                        token_url="https://{sub_domain}.gainsightcloud.com/oauth/t",
                    )
                }
            },
        )
    )
    assert registry.is_configured("gainsight_customer_success")


CUSTOM = {
    "display_name": "Acme Salesforce gateway",
    "fivetran_service": "salesforce",
    "issuer": "https://login.acme.example",
    "authorization_url": "https://login.acme.example/authorize",
    "token_url": "https://login.acme.example/token",
}


@pytest.mark.db_independent
def test_custom_provider_for_a_catalog_service_is_refused_without_replaces() -> None:
    problems = problems_of(
        Settings(
            mode="production",
            oauth={"providers": {"acme_sf": CUSTOM}, "apps": {"acme_sf": app()}},
        )
    )
    assert len(problems) == 1, problems
    assert "custom provider 'acme_sf' is for 'salesforce'" in problems[0]
    assert "replaces: salesforce" in problems[0]


@pytest.mark.db_independent
def test_custom_provider_replaces_the_catalog_provider_explicitly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pbf.providers")
    registry = build_registry(
        Settings(
            mode="production",
            oauth={
                "providers": {"acme_sf": {**CUSTOM, "replaces": "salesforce"}},
                "apps": {"acme_sf": app()},
            },
        )
    )
    assert registry.find("salesforce") is None
    assert registry.for_service("salesforce").key == "acme_sf"  # type: ignore[union-attr]
    record = next(r for r in caplog.records if "replaces" in r.getMessage())
    assert record.__dict__["replaces"] == "salesforce" and record.__dict__["provider"] == "acme_sf"
    problems = problems_of(
        Settings(
            mode="production",
            oauth={"providers": {"acme_sf": {**CUSTOM, "replaces": "hubspot"}}},
        )
    )
    assert (
        "replaces 'hubspot', but the catalog provider of 'salesforce' is 'salesforce'"
        in (problems[0])
    )


@pytest.mark.db_independent
def test_operator_issuer_turns_on_metadata_discovery() -> None:
    registry = build_registry(
        Settings(
            mode="production",
            oauth={
                "apps": {
                    "hubspot": app(issuer="https://auth.hubspot.example"),
                    "asana": app(),
                }
            },
        )
    )
    assert registry.get("hubspot").spec.discover_metadata is True
    assert registry.get("asana").spec.discover_metadata is False


@pytest.mark.db_independent
def test_registries_share_the_parsed_catalog_and_overrides_stay_in_theirs() -> None:
    """The catalog is parsed once per process and its specs are shared: an override, a
    sandbox base URL or a custom provider changes only the registry that configured it."""
    shipped, problems = catalog_specs()
    assert problems == ()
    real_token_url = shipped["hubspot"].token_url
    overridden = build_registry(
        Settings(
            mode="sandbox",
            oauth={"apps": {"hubspot": app(token_url="https://override.example/token")}},
        )
    )
    on_a = build_registry(Settings(mode="sandbox", public_base_url="http://a.example:8000"))
    on_b = build_registry(Settings(mode="sandbox", public_base_url="http://b.example:8000"))
    again = build_registry(
        Settings(
            mode="sandbox",
            oauth={"apps": {"hubspot": app(token_url="https://again.example/token")}},
        )
    )
    assert overridden.get("hubspot").endpoints().token_url == "https://override.example/token"
    assert again.get("hubspot").endpoints().token_url == "https://again.example/token"
    assert on_a.get("hubspot").endpoints().token_url == (
        "http://a.example:8000/sandbox/oauth/hubspot/token"
    )
    assert on_b.get("hubspot").endpoints().token_url == (
        "http://b.example:8000/sandbox/oauth/hubspot/token"
    )
    assert catalog_specs()[0]["hubspot"].token_url == real_token_url
    # Unchanged providers are the very same objects in registries on one base URL …
    same_url = build_registry(Settings(mode="sandbox", public_base_url="http://a.example:8000"))
    assert same_url.get("salesforce").spec is on_a.get("salesforce").spec
    # … which is safe because a spec cannot be changed in place.
    with pytest.raises(ValidationError):
        on_a.get("salesforce").spec.token_url = "https://elsewhere.example/token"  # type: ignore[misc]
