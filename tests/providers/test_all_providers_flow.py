"""Every one of the 142 Fivetran services with an API ``auth`` block, onboarded end to end.

One app (sandbox mode, real database) serves the whole module; each flow runs over ASGI:

* redirect-based providers (authorization code): connect session → ``/connect`` start →
  sandbox authorization server consent (which applies the provider's client authentication,
  PKCE, refresh-token and rotation rules from the catalog) → callback → the connection is
  ``connected`` at the Fivetran simulator, whose create body validates against Fivetran's
  request schema for that service (re-checked here from the simulator's request log);
* providers whose Fivetran auth block takes no token are not offered (Connect Card only);
* non-redirect services (client credentials, API keys, certificates, OAuth 1.0a tokens) go
  through the credential form, which fills the auth block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from app.config import Settings
from app.fivetran.payloads import validate_create_payload
from app.providers.catalog_data import credential_services
from app.providers.startup import build_registry
from app.sources.forms import required_for
from app.state import app_state
from tests.fixtures.app import BASE_URL, fresh_database
from tests.fixtures.browser import Browser, query_of, relative, with_params
from tests.fixtures.connect import APP_ORIGIN, RETURN_TO, configure_with_first_choices
from tests.fixtures.providers import example_inputs

pytestmark = pytest.mark.asyncio(loop_scope="module")

_REGISTRY = build_registry(Settings(mode="sandbox"))
OAUTH = sorted(p.key for p in _REGISTRY.all() if p.spec.fivetran.hands_over_token)
CONNECT_CARD_ONLY = sorted(p.key for p in _REGISTRY.all() if not p.spec.fivetran.hands_over_token)
CREDENTIALS = sorted(credential_services())


class Module:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.app = app
        self.client = client
        self.headers = headers


@pytest.fixture(scope="module")
def module_db(template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from fresh_database(template_db, tmp_path_factory.mktemp("all-providers"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(module_db: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Module]:
    from app.callers.service import create_api_key
    from app.main import create_app

    settings = Settings(
        mode="sandbox",
        data_dir=tmp_path_factory.mktemp("var"),
        database_url=module_db,
        public_base_url=BASE_URL,
        api={"allowed_origins": [APP_ORIGIN]},
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with app.state.sessionmaker() as session, session.begin():
            _, key = await create_api_key(session, name="all-providers", scopes=["admin"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            headers = {"Authorization": f"Bearer {key}"}
            r = await client.put("/v1/end-users/acme", json={"name": "Acme"}, headers=headers)
            assert r.status_code == 201, r.text
            yield Module(app, client, headers)


async def _create_body(env: Module, service: str) -> dict[str, Any]:
    """The create request the simulator received for ``service`` (masked), re-validated."""
    r = await env.client.get("/sandbox/fivetran/_control/requests")
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
    validate_create_payload(bodies[0])
    return bodies[0]


async def _remote(env: Module, fivetran_id: str) -> dict[str, Any]:
    r = await env.client.get(
        f"/sandbox/fivetran/v1/connections/{fivetran_id}", auth=("sandbox_key", "sandbox_secret")
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


@pytest.mark.db_independent
async def test_every_auth_block_service_is_covered() -> None:
    from app.fivetran.index import all_services, get_service

    auth_services = {s for s in all_services() if get_service(s).auth_tree is not None}  # type: ignore[union-attr]
    providers = {p.fivetran_service for p in _REGISTRY.all()}
    assert len(auth_services) == 142
    assert providers | set(CREDENTIALS) == auth_services
    assert not providers & set(CREDENTIALS)
    assert len(OAUTH) + len(CONNECT_CARD_ONLY) + len(CREDENTIALS) == 142


@pytest.mark.parametrize("provider_key", OAUTH)
async def test_oauth_provider_connects(env: Module, provider_key: str) -> None:
    provider = env.app.state.providers.get(provider_key)
    service = provider.fivetran_service
    r = await env.client.post(
        "/v1/connect-sessions",
        json={
            "end_user": "acme",
            "service": service,
            "return_to": RETURN_TO,
            "config": _complete(
                app_state(env.app).sources.get(service, "oauth2").config_schema,
                example_inputs(provider),
            ),
        },
        headers=env.headers,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    browser = Browser(env.client, origin=APP_ORIGIN)
    r = await browser.post(created["connect_url"])
    assert r.status_code == 303, r.text
    authorize_url = r.headers["location"]
    assert authorize_url.startswith(f"{BASE_URL}/sandbox/oauth/{provider_key}/authorize?")
    r = await env.client.get(with_params(authorize_url, login_hint="auto"))
    assert r.status_code in (302, 303), r.text[:300]
    callback = r.headers["location"]
    assert provider.code_param in query_of(callback)
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    back = query_of(r.headers["location"])
    if provider.spec.picker is not None:  # account pickers: the choice comes first
        assert back.get("status") == "needs_configuration", back
        await configure_with_first_choices(env.client, env.headers, back["connection_id"])
    else:
        assert back.get("status") == "connected", back

    r = await env.client.get(f"/v1/connections/{back['connection_id']}", headers=env.headers)
    body = r.json()
    assert body["state"] == "connected", (body.get("setup_tests"), body.get("state_reason"))
    # The provider account was identified exactly where the catalog declares a source.
    if provider.spec.identity.declared:
        assert body["account"] and body["account"]["id"], body["account"]
    else:
        assert body["account"] is None
    remote = await _remote(env, body["fivetran_connection_id"])
    assert remote["service"] == service
    assert remote["status"]["setup_state"] == "connected", remote["status"]
    sent = await _create_body(env, service)
    auth = sent["auth"]
    # The auth block carries the tokens the catalog maps (masked in the log) and, where the
    # service takes it, the OAuth app.
    for name in provider.spec.fivetran.auth:
        if name == "client_access":
            assert auth["client_access"]["client_id"], auth
        elif name == "access_token" or provider.requires_refresh_token:
            assert auth[name] == "******", (name, auth)
    for path in provider.spec.fivetran.auth_extra:
        head = path.split(".")[0]
        assert head in auth, (path, auth)


async def test_connect_card_only_services_are_offered_by_card_alone(env: Module) -> None:
    # An auth block without a token we can obtain: Fivetran's Connect Card is the only way
    # (with its reason); a connect session is refused.
    r = await env.client.get("/v1/sources", headers=env.headers, params={"limit": 1000})
    assert r.status_code == 200, r.text
    ways: dict[str, list[str]] = {}
    for item in _items(r.json()):
        ways.setdefault(item["service"], []).append(item["auth_method"])
    for key in CONNECT_CARD_ONLY:
        service = _REGISTRY.get(key).fivetran_service
        assert ways.get(service) == ["connect_card"], (service, ways.get(service))
        r = await env.client.post(
            "/v1/connect-sessions",
            json={"end_user": "acme", "service": service, "return_to": RETURN_TO},
            headers=env.headers,
        )
        assert r.status_code in (404, 422), r.text
        assert r.headers["content-type"].startswith("application/problem+json")


def _items(page: Any) -> list[dict[str, Any]]:
    return list(page["items"] if isinstance(page, dict) else page)


def _value(name: str, schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    return f"sandbox-{name.replace('.', '-')}"


def _complete(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus a value for every field the form requires (conditions included)."""
    out = dict(config)
    for _ in range(3):  # a filled selector may require more fields
        for name in required_for(schema, out):
            if name not in out and name in schema["properties"]:
                out[name] = _value(name, schema["properties"][name])
    return out


def _fill(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain values, secrets) for every property of an object schema, nested objects too."""
    plain: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        if prop.get("type") == "object" and "properties" in prop:
            sub_plain, sub_secret = _fill(prop)
            if sub_plain:
                plain[name] = sub_plain
            if sub_secret:
                secret[name] = sub_secret
        elif prop.get("writeOnly"):
            secret[name] = _value(name, prop)
        else:
            plain[name] = _value(name, prop)
    return plain, secret


@pytest.mark.parametrize("service", CREDENTIALS)
async def test_credential_route_fills_the_auth_block(env: Module, service: str) -> None:
    # (twitter/twitter_ads prefer their OAuth 1.0a flow: ask for the credential way)
    r = await env.client.get(f"/v1/sources/{service}?auth_method=credentials", headers=env.headers)
    assert r.status_code == 200, r.text
    source = r.json()
    assert source["auth_method"] == "credentials"
    assert "verified" in source
    schema = source["config_schema"]
    auth_schema = schema["properties"]["auth"]  # the auth block, in its own shape
    assert auth_schema["properties"], schema
    plain = _complete(schema, {})
    plain.pop("auth", None)
    plain_auth, secret_auth = _fill(auth_schema)
    plain["auth"] = plain_auth
    r = await env.client.post(
        "/v1/connections",
        json={
            "end_user": "acme",
            "service": service,
            "config": plain,
            "credentials": {"auth": secret_auth} if secret_auth else None,
        },
        headers=env.headers,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "connected", (body.get("setup_tests"), body.get("state_reason"))
    sent = await _create_body(env, service)
    assert sent.get("auth"), sent
    for name in auth_schema["properties"]:
        assert name in sent["auth"], (name, sent["auth"])
    assert "auth" not in sent["config"]
    # The auth block's secrets are vaulted and masked: never in the stored or returned config.
    assert not _secret_values(body, secret_auth), body


def _secret_values(value: Any, secrets: dict[str, Any]) -> set[str]:
    """Secret strings of ``secrets`` that appear anywhere in ``value``."""
    wanted = set(_strings(secrets))
    return {v for v in _strings(value) if v in wanted}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _strings(v)]
    if isinstance(value, list):
        return [x for v in value for x in _strings(v)]
    return [value] if isinstance(value, str) else []
