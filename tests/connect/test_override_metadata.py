"""Operator overrides against a strict, separate authorization server (attack tests).

The catalog provider ``hubspot`` is overridden by configuration to a different authorization
server (``https://as.example``: the sandbox authorization server run standalone, which
publishes RFC 8414 metadata advertising ``authorization_response_iss_parameter_supported``).

* The metadata is discovered and enforced: a callback with ``iss`` stripped is refused, no
  token request is made and nothing is left behind.
* With ``iss`` the flow connects; the Fivetran simulator's setup test checks the token at the
  overriding server's introspection endpoint (learned from the metadata).
* Without metadata (404) and without an introspection endpoint, the setup test says plainly
  that the token was not checked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.providers.registry import sandbox_client_secret
from app.providers.startup import build_registry
from app.sandbox.oauth import create_sandbox_oauth_app
from tests.fixtures.app import BASE_URL
from tests.fixtures.browser import query_of, relative, with_params
from tests.fixtures.connect import APP_ORIGIN, FlowHarness

EXT = "https://as.example"
ISSUER = f"{EXT}/sandbox/oauth/hubspot"


class ExternalAS(httpx.AsyncBaseTransport):
    """Routes ``https://as.example`` to the standalone server; ``metadata=False`` hides its
    RFC 8414 document (404), like a server that publishes none."""

    def __init__(self) -> None:
        registry = build_registry(Settings(mode="sandbox", public_base_url=EXT))
        self.app = create_sandbox_oauth_app(
            Settings(mode="sandbox", public_base_url=BASE_URL), registry=registry
        )
        self.inner = httpx.ASGITransport(app=self.app)
        self.metadata = True
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.url.host != "as.example":
            return httpx.Response(502, text="no network in tests")
        if not self.metadata and "/.well-known/" in request.url.path:
            return httpx.Response(404, text="not found")
        return await self.inner.handle_async_request(request)


@pytest.fixture
def strict(
    settings_factory: Callable[..., Settings],
    make_flow_harness: Callable[..., Awaitable[FlowHarness]],
) -> Callable[..., Awaitable[tuple[FlowHarness, ExternalAS]]]:
    """The app with ``hubspot`` overridden to the external server (extra app settings)."""

    async def make(**app_overrides: Any) -> tuple[FlowHarness, ExternalAS]:
        external = ExternalAS()
        settings = settings_factory(
            api={"allowed_origins": [APP_ORIGIN]},
            oauth={
                "apps": {
                    "hubspot": {
                        "client_id": "sandbox-hubspot",
                        "client_secret": sandbox_client_secret("hubspot"),
                        "issuer": ISSUER,
                        "authorization_url": f"{ISSUER}/authorize",
                        "token_url": f"{ISSUER}/token",
                        # The account identity call goes to the overriding server too.
                        "identity": {
                            "source": "endpoint",
                            "url": f"{ISSUER}/api/account-info/v3/details",
                            "id": "portalId",
                            "label_format": "HubSpot portal {id}",
                        },
                        **app_overrides,
                    }
                }
            },
        )
        harness = await make_flow_harness(settings, external)
        await harness.end_user()
        return harness, external

    return make


async def _consent(external: ExternalAS, authorize_url: str) -> str:
    async with httpx.AsyncClient(transport=external.inner, base_url=EXT) as browser_at_as:
        r = await browser_at_as.get(with_params(authorize_url, login_hint="auto"))
    assert r.status_code in (302, 303), r.text[:300]
    return str(r.headers["location"])


async def _vault_rows(harness: FlowHarness) -> int:
    from app.vault.models import VaultSecret

    async with harness.app.state.sessionmaker() as s:
        stmt = select(func.count()).select_from(VaultSecret)
        return int(await s.scalar(stmt.where(VaultSecret.owner_type == "connection")) or 0)


async def test_stripped_iss_is_refused_when_the_metadata_advertises_it(strict: Any) -> None:
    harness, external = await strict()
    assert not harness.app.state.providers.get("hubspot").sandboxed
    created = await harness.session("hubspot")
    browser = harness.browser()
    authorize_url = await harness.start(browser, created["connect_url"])
    assert authorize_url.startswith(f"{ISSUER}/authorize?")
    assert any("/.well-known/oauth-authorization-server" in p for p in external.paths)
    callback = await _consent(external, authorize_url)
    params = query_of(callback)
    assert params["iss"] == ISSUER
    # The attack: the authorization response without its iss (a mix-up attempt).
    stripped = (
        relative(callback).split("?")[0]
        + "?"
        + str(httpx.QueryParams({k: v for k, v in params.items() if k != "iss"}))
    )
    r = await browser.get(stripped)
    assert r.status_code == 303, r.text
    back = query_of(r.headers["location"])
    assert back == {**back, "status": "error", "error": "issuer_mismatch"}
    # Nothing exchanged, nothing stored, nothing at Fivetran.
    assert not [p for p in external.paths if p.endswith("/token")]
    assert await _vault_rows(harness) == 0
    assert (await harness.rows())["fivetran_connections"] == 0
    status = await harness.session_status(created["id"])
    assert status["status"] == "failed" and status["error"] == "issuer_mismatch"


async def _connected_setup_tests(harness: FlowHarness, external: ExternalAS) -> list[Any]:
    """A full flow through the external server; the connection's setup tests."""
    created = await harness.session("hubspot")
    browser = harness.browser()
    callback = await _consent(external, await harness.start(browser, created["connect_url"]))
    r = await browser.get(relative(callback))
    back = query_of(r.headers["location"])
    assert back["status"] == "connected", back
    conn = await harness.client.get(
        f"/v1/connections/{back['connection_id']}", headers=harness.headers
    )
    return list(conn.json()["setup_tests"])


async def test_override_with_iss_connects_and_setup_test_introspects_there(strict: Any) -> None:
    harness, external = await strict()
    tests = await _connected_setup_tests(harness, external)
    # The simulator's setup test asked the overriding server (metadata's introspection).
    assert "/sandbox/oauth/hubspot/introspect" in external.paths
    assert tests[0]["status"] == "PASSED" and "not checked" not in tests[0]["message"]


async def test_without_metadata_the_setup_test_says_the_token_was_not_checked(
    strict: Any,
) -> None:
    harness, external = await strict()
    external.metadata = False
    (test,) = await _connected_setup_tests(harness, external)
    assert test["status"] == "PASSED"
    assert "not checked" in test["message"]
    assert not [p for p in external.paths if p.endswith("/introspect")]


async def test_configuration_alone_can_require_iss(strict: Any) -> None:
    """No metadata, but the operator says the server sends iss: a stripped iss is refused."""
    harness, external = await strict(authorization_response_iss="true")
    external.metadata = False
    created = await harness.session("hubspot")
    browser = harness.browser()
    callback = await _consent(external, await harness.start(browser, created["connect_url"]))
    params = {k: v for k, v in query_of(callback).items() if k != "iss"}
    r = await browser.get(relative(callback).split("?")[0] + "?" + str(httpx.QueryParams(params)))
    assert query_of(r.headers["location"])["error"] == "issuer_mismatch"
    assert await _vault_rows(harness) == 0
