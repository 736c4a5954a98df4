"""Credential forms holding a service principal (Microsoft Entra client credentials): the
credentials are tried once at the (sandbox-simulated) token endpoint with authlib before the
connection is created. Refused → 422 naming the field; unreachable → 502; either way nothing is
written and Fivetran is not called."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.connections.models import Connection
from app.providers import client_credentials
from app.vault.models import VaultSecret

SERVICES = ["azure_blob_storage", "microsoft_dynamics_365_fno"]


async def _token_requests(client: httpx.AsyncClient, service: str) -> int:
    """Client-credentials requests the (simulated) token endpoint received for ``service``."""
    hits = (await client.get("/sandbox/oauth/_control/token-requests")).json()["items"]
    return sum(1 for h in hits if h["provider_key"] == f"cc:{service}")


@pytest.fixture
async def make_env(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Any]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    opened: list[Any] = []

    async def make() -> tuple[Any, httpx.AsyncClient, dict]:
        app = create_app(settings_factory())
        ctx = app.router.lifespan_context(app)
        await ctx.__aenter__()
        opened.append(ctx)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        )
        opened.append(client)
        async with app.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        headers = {"Authorization": f"Bearer {key}"}
        r = await client.put("/v1/end-users/acme", json={"name": "Acme"}, headers=headers)
        assert r.status_code in (200, 201), r.text
        return app, client, headers

    yield make
    for item in reversed(opened):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


def _body(service: str, *, secret: str = "s3cret", tenant: str = "contoso.onmicrosoft.com") -> dict:
    config: dict[str, Any] = {
        "auth_method": "SERVICE_PRINCIPAL_SECRET",
        "storage_account_name": "acmestore",
        "container_name": "exports",
        "auth": {"client_id": "11111111-2222-3333-4444-555555555555", "tenant_id": tenant},
    }
    if service == "azure_blob_storage":
        config["file_type"] = "csv"
    return {
        "end_user": "acme",
        "service": service,
        "config": config,
        "credentials": {"auth": {"client_secret": secret}},
    }


async def _nothing_written(app: Any, client: httpx.AsyncClient) -> None:
    async with app.state.sessionmaker() as s:
        assert await s.scalar(select(func.count()).select_from(Connection)) == 0
        assert (
            await s.scalar(
                select(func.count())
                .select_from(VaultSecret)
                .where(VaultSecret.owner_type == "connection")
            )
            == 0
        )
    log = (await client.get("/sandbox/fivetran/_control/requests")).json()["data"]["items"]
    assert not [e for e in log if e["path"].rstrip("/").endswith("/v1/connections")]


@pytest.mark.parametrize("service", SERVICES)
async def test_valid_service_principal_is_checked_then_created(
    make_env: Callable[..., Any], service: str
) -> None:
    _app, client, headers = await make_env()
    r = await client.post("/v1/connections", json=_body(service), headers=headers)
    assert r.status_code == 201, r.text
    assert await _token_requests(client, service) == 1
    assert r.json()["state"] == "connected", r.json()


@pytest.mark.parametrize("service", SERVICES)
async def test_refused_secret_is_a_422_naming_the_field(
    make_env: Callable[..., Any], service: str
) -> None:
    app, client, headers = await make_env()
    r = await client.post("/v1/connections", json=_body(service, secret="wrong"), headers=headers)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "invalid_credentials"
    assert problem["errors"][0]["field"] == "config.auth.client_secret"
    assert "wrong" not in r.text
    assert await _token_requests(client, service) == 1
    await _nothing_written(app, client)


async def test_unknown_tenant_is_a_422_naming_the_tenant(make_env: Callable[..., Any]) -> None:
    app, client, headers = await make_env()
    body = _body("azure_blob_storage", tenant="invalid")
    r = await client.post("/v1/connections", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "config.auth.tenant_id"
    await _nothing_written(app, client)


async def test_tenant_that_would_change_the_url_is_refused_without_a_request(
    make_env: Callable[..., Any],
) -> None:
    app, client, headers = await make_env()
    body = _body("azure_blob_storage", tenant="evil.example/../x")
    r = await client.post("/v1/connections", json=body, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "config.auth.tenant_id"
    assert await _token_requests(client, "azure_blob_storage") == 0
    await _nothing_written(app, client)


async def test_unreachable_token_endpoint_is_a_502(
    make_env: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A token endpoint nobody listens on (the discard port): a real connection failure.
    monkeypatch.setattr(
        client_credentials, "token_url_for", lambda *a, **k: "http://127.0.0.1:9/token"
    )
    app, client, headers = await make_env()
    r = await client.post("/v1/connections", json=_body("azure_blob_storage"), headers=headers)
    assert r.status_code == 502, r.text
    assert r.json()["code"] == "client_credentials_unverifiable"
    assert r.headers["content-type"].startswith("application/problem+json")
    await _nothing_written(app, client)


async def test_connection_string_way_is_not_checked(make_env: Callable[..., Any]) -> None:
    _app, client, headers = await make_env()
    body = {
        "end_user": "acme",
        "service": "azure_blob_storage",
        "config": {
            "auth_method": "CONNECTION_STRING",
            "container_name": "exports",
            "file_type": "csv",
        },
        "credentials": {"connection_string": "DefaultEndpointsProtocol=https;AccountName=a"},
    }
    r = await client.post("/v1/connections", json=body, headers=headers)
    assert r.status_code == 201, r.text
    assert await _token_requests(client, "azure_blob_storage") == 0
