"""The sources catalog: generated from Fivetran's definition and the provider catalog."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from app.providers.registry import ProviderRegistry
from app.sources.catalog import SourceCatalog
from app.state import app_state
from tests.fixtures.onboarding import problem


async def test_catalog_lists_onboardable_services(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/sources")
    assert r.status_code == 200, r.text
    items: dict[str, dict[str, Any]] = {}
    for item in r.json()["items"]:  # one item per way, the preferred way first
        items.setdefault(item["service"], item)
    # OAuth sources of the (sandbox-configured) provider catalog, credentials sources from
    # Fivetran's definition; Connect-Card-only ones by card (tests/connections/test_connect_card).
    assert items["salesforce"]["auth_method"] == "oauth2"
    assert items["intercom"]["auth_method"] == "oauth2"
    assert items["stripe"]["auth_method"] == "credentials"
    assert items["postgres"]["auth_method"] == "credentials"
    for card in ("mailchimp", "slack", "notion", "yahoo_gemini"):
        assert items[card]["auth_method"] == "connect_card", card  # Connect Card only
    assert len(items) > 100
    # Every provider's facts carry their verification status.
    assert items["airtable"]["auth_method"] == "oauth2"
    assert items["airtable"]["verified"] is False
    assert "refresh_token.rotates" in items["airtable"]["unverified_facts"]
    assert items["google_search_console"]["verified"] is True
    assert items["google_search_console"].get("unverified_facts") is None
    assert any(
        f.startswith("token_client_auth") for f in items["adobe_workfront"]["unverified_facts"]
    )
    # OAuth 1.0a (X) is offered by its own browser flow first, and still as a credential form
    # that fills the auth block (for customers holding their own tokens).
    assert items["twitter"]["auth_method"] == "oauth1"
    twitter = next(
        i
        for i in r.json()["items"]
        if i["service"] == "twitter" and i["auth_method"] == "credentials"
    )
    auth = twitter["config_schema"]["properties"]["auth"]  # the auth block, in its own shape
    assert auth["properties"]["oauth_token_secret"]["writeOnly"] is True
    assert auth["properties"]["client_access"]["properties"]["client_secret"]["writeOnly"]
    assert "writeOnly" not in auth["properties"]["client_access"]["properties"]["client_id"]

    sf = items["salesforce"]
    assert sf["name"] == "Salesforce"
    assert "api" in sf["scopes"]
    props = sf["config_schema"]["properties"]
    assert "hostname" in props and props["hostname"]["pattern"].startswith("^")
    for ours in ("schema", "authentication_method", "private_key", "connecting_user"):
        assert ours not in props, ours
    assert items["stripe"]["scopes"] is None

    pg = items["postgres"]["config_schema"]
    password = pg["properties"]["password"]
    assert (password["type"], password["format"], password["writeOnly"]) == (
        "string",
        "password",
        True,
    )
    assert pg["properties"]["port"]["type"] == "integer"
    assert "SshTunnel" in pg["properties"]["connection_type"]["enum"]
    for ours in ("schema_prefix", "public_key"):
        assert ours not in pg["properties"]
    assert set(pg["required"]) >= {"host", "port", "database", "user"}
    assert pg["additionalProperties"] is False


async def test_catalog_pages(app: FastAPI, api: httpx.AsyncClient) -> None:
    everything = [s.service for s in app_state(app).sources.list()]
    assert everything == sorted(everything)
    assert [s["service"] for s in (await api.get("/v1/sources")).json()["items"]] == everything
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        params: dict[str, str | int] = {"limit": 7}  # page ends fall between two ways too
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/v1/sources", params=params)).json()
        seen += [s["service"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything


async def test_one_source_and_404s(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/sources/stripe")
    assert r.status_code == 200 and r.json()["service"] == "stripe"
    assert r.json()["config_schema"]["properties"]["api_key"]["writeOnly"] is True
    problem(await api.get("/v1/sources/no_such_service"), 404, "source_not_found")
    problem(
        await api.get("/v1/sources/mailchimp", params={"auth_method": "oauth2"}),
        404,
        "source_not_found",
    )


async def test_oauth_source_needs_a_configured_app(app: FastAPI, api: httpx.AsyncClient) -> None:
    registry = app.state.providers
    apps = {p.key: registry.app_config(p.key) for p in registry.configured()}
    apps.pop("hubspot")
    app.state.providers = ProviderRegistry({p.key: p for p in registry.all()}, apps)
    # The catalog rebuilt from the new registry.
    app.state.sources = SourceCatalog(app.state.providers, app.state.settings)
    problem(
        await api.get("/v1/sources/hubspot", params={"auth_method": "oauth2"}),
        404,
        "source_not_found",
    )
    # HubSpot still takes a private app's secret: offered with credentials only.
    r = await api.get("/v1/sources/hubspot")
    assert r.status_code == 200 and r.json()["auth_method"] == "credentials", r.text
    ways = {
        (s["service"], s["auth_method"]) for s in (await api.get("/v1/sources")).json()["items"]
    }
    assert ("hubspot", "oauth2") not in ways and ("salesforce", "oauth2") in ways


async def test_sources_need_an_api_key(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/sources"), 401)
