"""Simulated counterparty latency (``POST /sandbox/<app>/_control/latency``).

The wait is an ``asyncio.sleep`` (recorded here, never timed), applies to every request of
that counterparty except its control API, and bad values are refused without changing it.
"""

from __future__ import annotations

import asyncio

import pytest

from app.sandbox import latency as latency_module

SIM_AUTH = ("sandbox_key", "sandbox_secret")


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    seen: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        seen.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(latency_module.asyncio, "sleep", fake_sleep)
    return seen


async def test_simulator_latency_delays_api_requests_not_control(client, sleeps):
    r = await client.post("/sandbox/fivetran/_control/latency", json={"seconds": 0.05})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["seconds"] == 0.05
    r = await client.get(
        "/sandbox/fivetran/v1/groups", auth=SIM_AUTH, headers={"Accept": "application/json"}
    )
    assert r.status_code == 200, r.text
    assert sleeps == [0.05]
    await client.get("/sandbox/fivetran/_control/requests")
    assert sleeps == [0.05]  # the control API is never delayed
    r = await client.post("/sandbox/fivetran/_control/latency", json={"seconds": 0})
    assert r.status_code == 200
    await client.get(
        "/sandbox/fivetran/v1/groups", auth=SIM_AUTH, headers={"Accept": "application/json"}
    )
    assert sleeps == [0.05]


async def test_oauth_server_latency_delays_its_endpoints(client, sleeps):
    r = await client.post("/sandbox/oauth/_control/latency", json={"seconds": 0.2})
    assert r.status_code == 200, r.text
    await client.get("/sandbox/oauth/hubspot/.well-known/oauth-authorization-server")
    assert sleeps == [0.2]
    await client.get("/sandbox/fivetran/_control/requests")  # other app: not delayed
    assert sleeps == [0.2]


@pytest.mark.parametrize("body", [{"seconds": -1}, {"seconds": 11}, {"seconds": "1"}, {}, []])
async def test_invalid_latency_is_refused_and_changes_nothing(client, sleeps, body):
    for app, status in (("fivetran", 400), ("oauth", 422)):
        r = await client.post(f"/sandbox/{app}/_control/latency", json=body)
        assert r.status_code == status, r.text
    await client.get(
        "/sandbox/fivetran/v1/groups", auth=SIM_AUTH, headers={"Accept": "application/json"}
    )
    await client.get("/sandbox/oauth/hubspot/.well-known/oauth-authorization-server")
    assert sleeps == []
