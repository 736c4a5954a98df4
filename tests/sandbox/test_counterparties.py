"""The sandbox counterparts in their own process (``pbf-headless sandbox-counterparties``):
the counterparties app serves the simulator and the sandbox OAuth server with issuers at
``sandbox.counterparties_url``; a service configured with it mounts neither and points its
Fivetran client and sandboxed providers there. (The crash tests of ``make reliability`` run
both as real processes.)"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings

CP = "http://127.0.0.1:8001"


async def test_counterparties_app_serves_the_simulator_and_the_oauth_server(
    settings_factory: Callable[..., Settings],
) -> None:
    from app.sandbox.counterparties import create_counterparties_app

    settings = settings_factory(sandbox={"sync_seconds": 0, "counterparties_url": CP})
    app = create_counterparties_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=CP) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            r = await client.get("/sandbox/fivetran/_control/state")
            assert r.status_code == 200, r.text
            r = await client.get("/sandbox/oauth/hubspot/.well-known/oauth-authorization-server")
            assert r.status_code == 200, r.text
            assert r.json()["issuer"] == f"{CP}/sandbox/oauth/hubspot"
            assert (await client.get("/v1/connections")).status_code == 404  # no API here


async def test_service_with_counterparties_elsewhere_mounts_neither(
    settings_factory: Callable[..., Settings],
) -> None:
    from app.main import create_app

    settings = settings_factory(sandbox={"sync_seconds": 0, "counterparties_url": CP + "/"})
    assert settings.fivetran_base_url == f"{CP}/sandbox/fivetran"
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        provider = app.state.providers.find("hubspot")
        assert provider is not None and provider.sandboxed
        assert provider.spec.token_url == f"{CP}/sandbox/oauth/hubspot/token"
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
        ) as client:
            assert (await client.get("/sandbox/fivetran/_control/state")).status_code == 404
            assert (await client.get("/sandbox/oauth/_control/token-requests")).status_code == 404


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1:8001", "http://127.0.0.1:8001/sandbox", "http://h?x=1", "nohost"]
)
def test_counterparties_url_must_be_a_base_url(
    settings_factory: Callable[..., Settings], url: str
) -> None:
    with pytest.raises(ValidationError, match="counterparties_url"):
        settings_factory(sandbox={"counterparties_url": url})
