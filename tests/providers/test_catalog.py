"""Catalog loading, operator configuration and startup validation (R10, R14, R23)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.errors import InvalidInput
from app.fivetran.index import get_service
from app.providers import ProviderConfigError, UnknownProvider
from app.providers.registry import AppCredentials
from app.providers.startup import build_registry, load_catalog_data
from app.providers.tokens import TokenResult
from app.vault.secret import Secret
from tests.fixtures.providers import example_inputs

REQUIRED_PROVIDERS = {
    "salesforce", "salesforce_sandbox", "hubspot", "google_ads", "google_analytics_4",
    "google_sheets", "facebook_ads", "linkedin_ads", "bingads", "pipedrive", "quickbooks",
    "snapchat_ads", "tiktok_ads", "pinterest_ads", "asana", "zoom", "zendesk", "intercom",
    "shopify",
}  # fmt: skip


def custom(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "display_name": "Acme CRM",
        "fivetran_service": "hubspot",
        "issuer": "https://auth.acme.example",
        "authorization_url": "https://auth.acme.example/authorize",
        "token_url": "https://auth.acme.example/token",
        "scopes": ["read"],
        "token_auth_method": "client_secret_post",
        # A custom provider for a service the catalog serves must replace it explicitly.
        "replaces": "hubspot",
    }
    entry.update(overrides)
    return entry


def production(**oauth: Any) -> Settings:
    return Settings(mode="production", oauth=oauth)


def problems_of(settings: Settings) -> list[str]:
    with pytest.raises(ProviderConfigError) as info:
        build_registry(settings)
    return info.value.problems


@pytest.mark.db_independent
def test_catalog_has_every_required_provider_and_real_fivetran_services() -> None:
    data = load_catalog_data()
    assert REQUIRED_PROVIDERS <= set(data)
    registry = build_registry(production())
    for provider in registry.all():
        assert get_service(provider.fivetran_service) is not None, provider.key
        assert get_service(provider.fivetran_service).auth_tree is not None, provider.key
    # Without OAuth apps nothing is usable in production.
    assert registry.configured() == []
    assert registry.for_service("salesforce") is None


@pytest.mark.db_independent
def test_production_endpoints_are_https_and_templated_from_inputs() -> None:
    registry = build_registry(production())
    for provider in registry.all():
        endpoints = provider.endpoints(example_inputs(provider))
        for url in (endpoints.authorization_url, endpoints.token_url, endpoints.issuer):
            assert url.startswith("https://"), (provider.key, url)
    sf = registry.get("salesforce").endpoints({"hostname": "acme.my.salesforce.com"})
    assert sf.token_url == "https://acme.my.salesforce.com/services/oauth2/token"
    assert registry.get("salesforce").endpoints().issuer == "https://login.salesforce.com"
    assert registry.get("intercom").endpoints({"region": "eu"}).token_url == (
        "https://api.eu.intercom.io/auth/eagle/token"
    )
    assert (
        registry.get("intercom").endpoints().authorization_url == "https://app.intercom.com/oauth"
    )


@pytest.mark.db_independent
def test_sandbox_points_every_provider_at_the_sandbox_server() -> None:
    registry = build_registry(Settings(mode="sandbox", public_base_url="http://127.0.0.1:8000"))
    assert {p.key for p in registry.configured()} >= REQUIRED_PROVIDERS
    for provider in registry.all():
        endpoints = provider.endpoints(example_inputs(provider))
        base = f"http://127.0.0.1:8000/sandbox/oauth/{provider.key}"
        assert endpoints.issuer == base
        assert endpoints.token_url == f"{base}/token"
        assert endpoints.authorization_url.startswith(f"{base}/authorize")
        app = registry.app_config(provider.key)
        assert app.client_id == f"sandbox-{provider.key}"
        secret = app.client_secret.reveal()
        assert "+" in secret and "%" in secret and ":" in secret


@pytest.mark.db_independent
def test_operator_app_from_environment_overrides_sandbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret_file = tmp_path / "sf-secret"
    secret_file.write_text("file+secret:value\n")
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__CLIENT_ID", "3MVG9-real")
    monkeypatch.setenv("PBF_OAUTH__APPS__SALESFORCE__CLIENT_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("PBF_OAUTH__APPS__GOOGLE_ADS__CLIENT_ID", "123.apps.example")
    monkeypatch.setenv("PBF_OAUTH__APPS__GOOGLE_ADS__CLIENT_SECRET", "g-secret")
    monkeypatch.setenv("PBF_OAUTH__APPS__GOOGLE_ADS__EXTRAS__DEVELOPER_TOKEN", "dev-token")
    monkeypatch.setenv(
        "PBF_OAUTH__APPS__GOOGLE_ADS__TOKEN_URL", "https://oauth2.googleapis.example/token"
    )
    settings = Settings(mode="sandbox")
    registry = build_registry(settings)
    sf = registry.get("salesforce")
    assert not sf.sandboxed
    assert sf.endpoints().token_url == "https://login.salesforce.com/services/oauth2/token"
    assert registry.get("hubspot").sandboxed  # the others stay on the sandbox server
    assert registry.get("google_ads").endpoints().token_url == (
        "https://oauth2.googleapis.example/token"
    )
    assert "real" not in repr(settings.oauth) or "file+secret" not in repr(settings.oauth)


@pytest.mark.db_independent
async def test_credentials_are_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("file+secret:value\n")
    settings = production(
        apps={
            "salesforce": {"client_id": "3MVG9", "client_secret_file": str(secret_file)},
            "google_ads": {
                "client_id": "g",
                "client_secret": "gs",
                "extras": {"developer_token": "dt"},
            },
        }
    )
    registry = build_registry(settings)
    client_id, client_secret, _extras = await registry.credentials(None, "salesforce")
    assert client_id == "3MVG9"
    assert isinstance(client_secret, Secret)
    assert client_secret.reveal() == "file+secret:value"
    assert "file+secret" not in repr(client_secret)
    google = await registry.credentials(None, "google_ads")
    assert google.extras["developer_token"].reveal() == "dt"
    assert {p.key for p in registry.configured()} == {"salesforce", "google_ads"}
    assert registry.for_service("google_ads").key == "google_ads"  # type: ignore[union-attr]
    with pytest.raises(UnknownProvider):
        registry.get("nope")


@pytest.mark.db_independent
def test_custom_provider_from_configuration() -> None:
    settings = production(
        providers={"acme_crm": custom()},
        apps={"acme_crm": {"client_id": "acme", "client_secret": "s"}},
    )
    registry = build_registry(settings)
    provider = registry.get("acme_crm")
    assert provider.origin == "config"
    assert registry.for_service("hubspot") is provider


@pytest.mark.db_independent
def test_custom_provider_from_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "acme_crm:\n  display_name: Acme\n  fivetran_service: hubspot\n"
        "  issuer: https://auth.acme.example\n"
        "  authorization_url: https://auth.acme.example/authorize\n"
        "  token_url: https://auth.acme.example/token\n"
        "  replaces: hubspot\n"
    )
    registry = build_registry(production(providers_file=str(path)))
    assert registry.get("acme_crm").display_name == "Acme"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            custom(issuer="https://accounts.google.com", token_url="https://evil.example/token"),
            "issuer 'https://accounts.google.com' is already used by provider",
        ),
        (custom(token_url="http://auth.acme.example/token"), "must be an https:// URL"),
        (custom(token_url="http://127.0.0.1:9000/token"), "uses http://"),
        (custom(response_type="token"), "response_type 'token' is not allowed"),
        (custom(grant_types=["authorization_code", "password"]), "password grant"),
        (custom(grant_types=["authorization_code", "implicit"]), "implicit grant"),
        (custom(response_mode="fragment"), "response_mode 'fragment' is not allowed"),
        (
            custom(extra_authorization_params={"response_type": "code token"}),
            "implicit/hybrid",
        ),
        (
            custom(
                authorization_url="https://{sub}.acme.example/authorize",
                inputs=[{"name": "sub", "title": "Sub", "pattern": "[a-z]+"}],
            ),
            "pattern must be anchored",
        ),
        (
            custom(
                authorization_url="https://{sub}.acme.example/authorize",
                inputs=[{"name": "sub", "title": "Sub", "pattern": "^[a-z+$"}],
            ),
            "pattern does not compile",
        ),
        (
            custom(
                authorization_url="https://{sub}.acme.example/authorize",
                inputs=[{"name": "sub", "title": "S", "pattern": "^[a-z]+$", "default": "A-1"}],
            ),
            "does not match its pattern",
        ),
        (custom(authorization_url="https://{tenant}.acme.example/a"), "{tenant}, which is not"),
        (
            custom(fivetran_service="not_a_service", replaces=None),
            "unknown Fivetran service 'not_a_service'",
        ),
        (custom(hooks=["no_such_hook"]), "unknown hook 'no_such_hook'"),
        (custom(token_auth_method="client_secret_jwt"), "token_auth_method"),
        (custom(extra_token_params={"grant_type": "password"}), "must not set 'grant_type'"),
    ],
)
@pytest.mark.db_independent
def test_invalid_provider_configuration_is_a_clear_startup_error(
    entry: dict[str, Any], expected: str
) -> None:
    problems = problems_of(production(providers={"acme_crm": entry}))
    assert len(problems) == 1, problems
    assert "'acme_crm'" in problems[0]
    assert expected in problems[0], problems


@pytest.mark.db_independent
def test_http_loopback_allowed_only_with_sandbox_or_test_flag() -> None:
    entry = custom(
        issuer="http://127.0.0.1:9000",
        authorization_url="http://127.0.0.1:9000/authorize",
        token_url="http://127.0.0.1:9000/token",
    )
    assert len(problems_of(production(providers={"acme_crm": entry}))) == 3
    build_registry(
        Settings(
            mode="production",
            oauth={"providers": {"acme_crm": entry}, "allow_insecure_loopback": True},
        )
    )
    build_registry(
        Settings(
            mode="sandbox",
            oauth={
                "providers": {"acme_crm": entry},
                "apps": {"acme_crm": {"client_id": "a", "client_secret": "b"}},
            },
        )
    )
    remote = custom(token_url="http://auth.acme.example/token")
    app = {"acme_crm": {"client_id": "a", "client_secret": "b"}}
    problems = problems_of(
        Settings(mode="sandbox", oauth={"providers": {"acme_crm": remote}, "apps": app})
    )
    assert "must be an https:// URL" in problems[0]


@pytest.mark.db_independent
def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(
        production(
            providers={
                "one": custom(response_type="token", fivetran_service="asana", replaces="asana"),
                "two": custom(
                    issuer="https://x.example",
                    token_url="http://x.example/t",
                    fivetran_service="zoom",
                    replaces="zoom",
                ),
                "salesforce": custom(
                    issuer="https://y.example", fivetran_service="salesforce", replaces="salesforce"
                ),
            },
            apps={
                "unknown_app": {"client_id": "x", "client_secret": "y"},
                "hubspot": {"client_id": "x"},
            },
        )
    )
    text = "\n".join(problems)
    assert "provider 'one'" in text and "provider 'two'" in text
    assert "clashes with the catalog provider" in text
    assert "there is no provider 'unknown_app'" in text
    assert "PBF_OAUTH__APPS__HUBSPOT__CLIENT_SECRET" in text
    assert len(problems) == 5, problems


async def test_startup_refuses_an_invalid_configuration(settings_factory: Any) -> None:
    from app.main import create_app

    app = create_app(
        settings_factory(oauth={"providers": {"bad": custom(response_mode="fragment")}})
    )
    with pytest.raises(ProviderConfigError, match="response_mode 'fragment'"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.db_independent
def test_production_settings_problems_for_oauth_apps() -> None:
    from app.config import production_problems

    settings = production(apps={"hubspot": {"client_id": "x"}}, allow_insecure_loopback=True)
    text = "\n".join(production_problems(settings))
    assert "PBF_OAUTH__APPS__HUBSPOT__CLIENT_SECRET" in text
    assert "PBF_OAUTH__ALLOW_INSECURE_LOOPBACK" in text


# --- end-user inputs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "shop",
    ["Acme", "acme.evil.example/x", "-acme", "acme_store", "acme store", "", "a" * 61,
     "acme.myshopify.com", "acme\n"],
)  # fmt: skip
@pytest.mark.db_independent
def test_shop_input_is_validated(shop: str) -> None:
    provider = build_registry(production()).get("shopify")
    with pytest.raises(InvalidInput) as info:
        provider.endpoints({"shop": shop})
    assert info.value.extra["field"] == "inputs.shop"


@pytest.mark.db_independent
def test_inputs_schema_defaults_and_unknown_inputs() -> None:
    registry = build_registry(production())
    shopify = registry.get("shopify")
    assert shopify.validate_inputs({"shop": "acme-store"}) == {"shop": "acme-store"}
    schema = shopify.inputs
    assert schema["required"] == ["shop"]
    assert schema["properties"]["shop"]["pattern"] == "^[a-z0-9][a-z0-9-]*$"
    assert schema["additionalProperties"] is False
    salesforce = registry.get("salesforce")
    assert "required" not in salesforce.inputs
    assert salesforce.validate_inputs(None) == {"hostname": "login.salesforce.com"}
    with pytest.raises(InvalidInput):
        salesforce.validate_inputs({"hostname": "acme.lightning.force.com"})
    with pytest.raises(InvalidInput):
        salesforce.validate_inputs({"hostname": "evil.example/x?.my.salesforce.com"})
    with pytest.raises(InvalidInput) as info:
        shopify.validate_inputs({"shop": "acme", "extra": "x"})
    assert info.value.extra["field"] == "inputs.extra"
    with pytest.raises(InvalidInput):
        registry.get("zendesk").endpoints({})
    assert registry.get("hubspot").inputs == {
        "type": "object", "properties": {}, "additionalProperties": False,
    }  # fmt: skip
    json.dumps(schema)


# --- Fivetran mapping --------------------------------------------------------------------


def _result(key: str, **metadata: str) -> TokenResult:
    return TokenResult(
        provider_key=key,
        access_token=Secret("at-1"),
        refresh_token=Secret("rt-1"),
        expires_at=None,
        granted_scope=None,
        issuer="https://issuer.example",
        client_id="cid",
        metadata=dict(metadata),
    )


@pytest.mark.db_independent
def test_fivetran_auth_and_config_mapping() -> None:
    registry = build_registry(production())
    app = AppCredentials("cid", Secret("csecret"), {"developer_token": Secret("dev")})
    qb = registry.get("quickbooks").fivetran_auth(_result("quickbooks", realm_id="9130"), app)
    qb = qb.place("quickbooks")  # providers hand data; the payload builder places it
    assert qb == {
        "client_access": {"client_id": "cid", "client_secret": "csecret"},
        "refresh_token": "rt-1",
        "realm_id": "9130",
    }
    ga = registry.get("google_ads").fivetran_auth(_result("google_ads"), app).place("google_ads")
    assert ga["client_access"]["developer_token"] == "dev"
    assert "user_agent" not in ga["client_access"]
    shop = registry.get("shopify")
    assert shop.fivetran_auth(_result("shopify"), app).place("shopify") == {"access_token": "at-1"}
    assert shop.fivetran_config(_result("shopify"), {"shop": "acme-store"}) == {
        "shop": "acme-store"
    }
    fb = registry.get("facebook_ads").fivetran_auth(_result("facebook_ads"), app)
    fb = fb.place("facebook_ads")
    assert fb == {
        "client_access": {"client_id": "cid", "client_secret": "csecret"},
        "access_token": "at-1",
    }
    zendesk = registry.get("zendesk")
    assert "refresh_token" not in zendesk.fivetran_auth(_result("zendesk"), app).place("zendesk")
    assert zendesk.fivetran_config(None, {"subdomain": "acme"}) == {"domain": "acme"}
    assert registry.get("intercom").fivetran_config(None, {}) == {"data_region": ""}
    assert registry.get("google_sheets").fivetran_config(None, {}) == {"auth_type": "OAuth"}


@pytest.mark.db_independent
def test_loose_operator_pattern_cannot_inject_into_urls() -> None:
    entry = custom(
        authorization_url="https://{host}/authorize",
        token_url="https://{host}/token",
        issuer="https://{host}",
        inputs=[{"name": "host", "title": "Host", "pattern": "^.*$"}],
    )
    registry = build_registry(
        production(
            providers={"acme_crm": entry},
            apps={"acme_crm": {"client_id": "a", "client_secret": "b"}},
        )
    )
    provider = registry.get("acme_crm")
    assert provider.endpoints({"host": "auth.acme.example"}).token_url == (
        "https://auth.acme.example/token"
    )
    for evil in (
        "evil.example/x?",
        "evil.example#",
        "user@evil.example",
        "evil.example:444",
        "a b",
    ):
        with pytest.raises(InvalidInput) as info:
            provider.endpoints({"host": evil})
        assert info.value.extra["field"] == "inputs.host"
