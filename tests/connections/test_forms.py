"""Forms a frontend can render, and what they require: over HTTP, against Fivetran's definition.

* the named sources: an empty submission is ONE 422 naming every missing field (nothing is
  written); a complete one previews a body valid against Fivetran's definition and creates;
* every offered (service, way): the preview of a minimal complete config — with and without
  every secret location filled (array items, objects in arrays, nested objects) — validates
  strictly against the service's request schema, and no secret comes back in clear.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.fivetran.index import get_service
from app.fivetran.secret_paths import ITEM, _set, secret_patterns
from app.sources import form_catalog
from app.sources.forms import required_for
from tests.fixtures.definition import definition_or_skip
from tests.fixtures.onboarding import problem, vault_rows


@pytest.fixture(scope="module")
def official() -> Any:
    return definition_or_skip()


NAMED: dict[str, tuple[set[str], dict[str, Any], dict[str, Any]]] = {
    # service: (missing when empty, complete config, credentials)
    "postgres": (
        {"host", "database", "user", "password"},
        {"host": "db.example.com", "database": "app", "user": "fivetran"},
        {"password": "pw-9f3Kq-secret"},
    ),
    "mysql": (
        {"host", "user", "password"},
        {"host": "db", "user": "ft"},
        {"password": "pw-9f3Kq-secret"},
    ),
    "sql_server": (
        {"host", "database", "user", "password"},
        {"host": "db", "database": "app", "user": "ft"},
        {"password": "pw-9f3Kq-secret"},
    ),
    "snowflake_db": (
        {"host", "user", "database", "password"},
        {"host": "acme.snowflakecomputing.com", "user": "ft", "database": "DB"},
        {"password": "pw-9f3Kq-secret"},
    ),
    "bigquery_db": ({"project_id"}, {"project_id": "acme-1"}, {}),
    "s3": (
        {"bucket", "auth_type", "file_type"},
        {"bucket": "acme", "auth_type": "ACCESS_KEY", "access_key_id": "AKIA", "file_type": "csv"},
        {"access_key_secret": "s3cr3t"},
    ),
    "mongo": (
        {"hosts", "user", "password"},
        {"hosts": ["m1:27017"], "user": "ft"},
        {"password": "pw-9f3Kq-secret"},
    ),
    "stripe": ({"api_key"}, {}, {"api_key": "rk_test_1"}),
    "shopify": ({"shop", "api_access_token"}, {"shop": "acme"}, {"api_access_token": "shpat_1"}),
    "github": ({"pats"}, {"sync_mode": "AllRepositories"}, {"pats": ["ghp_1", "ghp_2"]}),
}


@pytest.mark.parametrize("service", sorted(NAMED))
async def test_named_sources_require_what_practice_needs(
    service: str, app: FastAPI, api: httpx.AsyncClient, official: Any, count_rows: Any
) -> None:
    missing, config, credentials = NAMED[service]
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    r = await api.get(f"/v1/sources/{service}", params={"auth_method": "credentials"})
    assert r.status_code == 200, r.text
    form = r.json()
    assert form["required_source"] == "curated"
    assert form["category"] != "" and form["icon_url"].startswith("https://")
    schema = form["config_schema"]
    for name, prop in schema["properties"].items():
        assert prop["title"], name
    assert set(schema["x-order"]) == set(schema["properties"])

    r = await api.post("/v1/connections", json={"end_user": "acme", "service": service})
    body = problem(r, 422)
    assert {e["field"] for e in body["errors"]} == {f"config.{n}" for n in missing}, body
    assert all(e["code"] == "missing_config_field" for e in body["errors"])
    assert await count_rows("connections") == 0 and await vault_rows(app) == 0

    request = {"end_user": "acme", "service": service, "config": config, "credentials": credentials}
    r = await api.post("/v1/payloads/preview", json={**request, "auth_method": "credentials"})
    assert r.status_code == 200, r.text
    errors = [e.message for e in official(service).iter_errors(r.json()["body"])]
    assert not errors, errors
    r = await api.post("/v1/connections", json=request)
    assert r.status_code == 201, r.text
    for secret in _leaves(credentials):
        assert secret not in r.text


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value] if isinstance(value, str) else []


def _sample(prop: dict[str, Any]) -> Any:
    if "default" in prop:
        return prop["default"]
    if prop.get("enum"):
        return prop["enum"][0]
    if prop.get("examples"):
        return prop["examples"][0]
    kind = prop.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return False
    if kind == "array":
        return [_sample(prop.get("items", {"type": "string"}))]
    if kind == "object":
        return {
            k: _sample(v)
            for k, v in prop.get("properties", {}).items()
            if k in prop.get("required", [])
        }
    return "sample1"


def _complete(schema: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for _ in range(3):
        for name in required_for(schema, config):
            if name not in config and name in schema["properties"]:
                config[name] = _sample(schema["properties"][name])
    return config


#: The previews run in this many tests (every CHUNKS-th source each), so xdist workers share
#: the 1,000-odd requests instead of one worker finishing the suite alone.
CHUNKS = 4


@pytest.mark.parametrize("chunk", range(CHUNKS))
async def test_every_preview_is_valid_for_fivetran_with_and_without_nested_secrets(
    app: FastAPI, api: httpx.AsyncClient, official: Any, chunk: int
) -> None:
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    checked = nested = 0
    failures: list[Any] = []
    for source in app.state.sources.list()[chunk::CHUNKS]:
        schema = source.config_schema
        base = _complete(schema)
        variants = [base]
        if source.auth_method == "credentials" and secret_patterns(source.service):
            planted = json.loads(json.dumps(base))
            for n, pattern in enumerate(secret_patterns(source.service)):
                if pattern[0] not in schema["properties"]:
                    continue
                parts = [0 if seg == ITEM else seg for seg in pattern]
                _set(planted, parts, f"PLANTED{n}x")
                nested += len(pattern) > 1
            variants.append(planted)
        for config in variants:
            r = await api.post(
                "/v1/payloads/preview",
                json={
                    "end_user": "acme",
                    "service": source.service,
                    "auth_method": source.auth_method,
                    "config": config,
                },
            )
            if r.status_code != 200:
                failures.append((source.service, source.auth_method, r.status_code, r.text[:300]))
                continue
            assert "PLANTED" not in r.text, r.text
            errors = [e.message for e in official(source.service).iter_errors(r.json()["body"])]
            if errors:
                failures.append((source.service, source.auth_method, errors[:3]))
            checked += 1
    assert not failures, failures[:20]
    assert checked > 1000 // CHUNKS and nested >= 1, (checked, nested)
    # Across the chunks, at least 8 nested secret paths are planted (as in one test before).
    every_nested = sum(
        len(pattern) > 1 and pattern[0] in source.config_schema["properties"]
        for source in app.state.sources.list()
        if source.auth_method == "credentials"
        for pattern in secret_patterns(source.service)
    )
    assert every_nested >= 8, every_nested


@pytest.mark.db_independent
def test_curated_fields_exist_in_the_definition() -> None:
    for service, fields in form_catalog.CURATED.items():
        spec = get_service(service)
        assert spec is not None, service
        assert set(fields) <= set(spec.config_fields), service


async def test_listing_filters_and_both_ways(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/sources", params={"category": "database"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and all(i["category"] == "database" for i in items)
    assert "postgres" in {i["service"] for i in items}
    r = await api.get("/v1/sources", params={"q": "SNOWFLAKE"})
    assert {i["service"] for i in r.json()["items"]} >= {"snowflake_db"}
    r = await api.get("/v1/sources", params={"auth_method": "oauth2"})
    oauth = r.json()["items"]
    assert oauth and all(i["auth_method"] == "oauth2" for i in oauth)
    r = await api.get("/v1/sources", params={"auth_method": "sideways"})
    problem(r, 422)
    # sql_server accepts an auth block too; it is still offered with credentials.
    r = await api.get("/v1/sources/sql_server", params={"auth_method": "credentials"})
    assert r.status_code == 200, r.text
    # config.auth is a choice on snowflake, with labels; KEY_PAIR requires the private key.
    r = await api.get("/v1/sources/snowflake_db")
    auth = r.json()["config_schema"]["properties"]["auth"]
    assert auth["enum"] == ["PASSWORD", "KEY_PAIR"] and auth["default"] == "PASSWORD"
    assert {o["title"] for o in auth["oneOf"]} == {"Password", "Key pair"}
    rules = r.json()["config_schema"]["allOf"]
    assert {
        "if": {"properties": {"auth": {"const": "KEY_PAIR"}}, "required": ["auth"]},
        "then": {"required": ["private_key"]},
    } in rules
    # postgres: the tunnel fields appear with SshTunnel only.
    r = await api.get("/v1/sources/postgres")
    props = r.json()["config_schema"]["properties"]
    assert props["tunnel_host"]["x-show-if"] == {"connection_type": ["SshTunnel"]}
    assert props["port"]["default"] == 5432


async def test_oauth_previews_carry_every_mapped_field(
    api: httpx.AsyncClient, official: Any
) -> None:
    """Salesforce My Domain → config.base_url; QuickBooks auth.realm_id; Pinterest
    config.refresh_token_expires_at (Unix seconds, a string); bodies valid for Fivetran."""
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    cases = {
        "salesforce": ({"hostname": "acme.my.salesforce.com"}, "config", "base_url"),
        "quickbooks": ({}, "auth", "realm_id"),
        "pinterest_ads": ({}, "config", "refresh_token_expires_at"),
    }
    for service, (config, where, name) in cases.items():
        r = await api.post(
            "/v1/payloads/preview", json={"end_user": "acme", "service": service, "config": config}
        )
        assert r.status_code == 200, r.text
        body = r.json()["body"]
        assert name in body[where], (service, body)
        assert not [e.message for e in official(service).iter_errors(body)], service
    r = await api.post(
        "/v1/payloads/preview",
        json={
            "end_user": "acme",
            "service": "salesforce",
            "config": {"hostname": "acme.my.salesforce.com"},
        },
    )
    assert r.json()["body"]["config"]["base_url"] == "https://acme.my.salesforce.com"
    for bad in ("evil.example.com", "acme.my.salesforce.com.evil.io"):
        r = await api.post(
            "/v1/payloads/preview",
            json={"end_user": "acme", "service": "salesforce", "config": {"hostname": bad}},
        )
        assert r.status_code == 422, r.text
    # The form does not let the end-user set base_url directly (the mapping does).
    r = await api.get("/v1/sources/salesforce", params={"auth_method": "oauth2"})
    assert "base_url" not in r.json()["config_schema"]["properties"]


async def test_oauth_forms_show_only_the_oauth_path(api: httpx.AsyncClient) -> None:
    for service, absent in (
        ("quickbooks", {"client_id", "client_secret"}),
        ("shopify", {"client_id", "app_url", "client_secret", "api_access_token"}),
        ("salesforce", {"private_key", "certificate", "authentication_method"}),
    ):
        r = await api.get(f"/v1/sources/{service}", params={"auth_method": "oauth2"})
        assert r.status_code == 200, r.text
        props = set(r.json()["config_schema"]["properties"])
        assert not props & absent, (service, props & absent)
    # Shopify is also offered with an Admin API token (the caller chooses the way).
    r = await api.get("/v1/sources/shopify", params={"auth_method": "credentials"})
    assert {"shop", "api_access_token"} <= set(r.json()["config_schema"]["required"])
