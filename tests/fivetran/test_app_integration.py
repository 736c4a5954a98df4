"""Wiring inside the real app (sandbox mode): app.state.fivetran talks to the mounted simulator
in-process; setup tests introspect at the sandbox OAuth server; webhooks go through the
shared http client; /metrics counts Fivetran calls."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.fivetran.client import FivetranClient
from app.fivetran.payloads import auth_block_for, build_create_payload
from tests.fixtures.app import BASE_URL


async def test_client_is_wired_to_the_mounted_simulator(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ft = app.state.fivetran
    assert isinstance(ft, FivetranClient)
    assert ft.base_url == f"{BASE_URL}/sandbox/fivetran"
    info = await ft.account_info()
    assert info["account_id"] == "sandbox_account"
    # The simulator is reachable over HTTP too, and requires its Basic credentials.
    r = await client.get("/sandbox/fivetran/v1/groups")
    assert r.status_code == 401 and r.json()["code"] == "AuthFailed"
    metrics = (await client.get("/metrics")).text
    assert 'pbf_outbound_requests_total{status="200",target="fivetran"}' in metrics


async def test_setup_tests_introspect_at_the_sandbox_oauth_server(app: FastAPI) -> None:
    ft: FivetranClient = app.state.fivetran
    group = await ft.create_group("integration")
    auth = auth_block_for(
        "salesforce", client_id="c", client_secret="s", refresh_token="never-issued-token"
    )
    body = build_create_payload(
        "salesforce", group_id=group["id"], schema="sf", config={}, auth=auth
    )
    created = await ft.create_connection(body)
    test = created["setup_tests"][0]
    assert test["title"] == "Validate Login"
    assert test["status"] == "FAILED", test  # an unknown token is not active
    assert created["status"]["setup_state"] == "incomplete"
    sample = app.state.metrics.registry.get_sample_value(
        "pbf_outbound_requests_total", {"target": "oauth:salesforce", "status": "200"}
    ) or app.state.metrics.registry.get_sample_value(
        "pbf_outbound_requests_total", {"target": "oauth:salesforce", "status": "401"}
    )
    assert sample, "the simulator asked the sandbox OAuth server (in-process)"


async def test_webhooks_are_delivered_in_process(app: FastAPI) -> None:
    ft: FivetranClient = app.state.fivetran
    hook = await ft.create_account_webhook(
        f"{BASE_URL}/v1/webhooks/fivetran", ["sync_end"], secret="whatever"
    )
    result = await ft.test_webhook(hook["id"], "sync_end")
    assert result["status"] > 0, result  # an HTTP answer from our own app, no socket involved
    simulator = app.state.fivetran_simulator
    await simulator.webhooks.drain()
    assert simulator.state.deliveries[-1]["status"] == result["status"]
    sample = app.state.metrics.registry.get_sample_value(
        "pbf_outbound_requests_total",
        {"target": "sandbox:fivetran-webhook", "status": str(result["status"])},
    )
    assert sample == 1


async def test_control_api_and_faults_work_when_mounted(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        "/sandbox/fivetran/_control/faults",
        json={"method": "GET", "path_regex": "^/v1/groups$", "status": 403, "count": 1},
    )
    assert r.status_code == 201, r.text
    from app.fivetran.errors import FivetranForbidden

    ft: FivetranClient = app.state.fivetran
    with pytest.raises(FivetranForbidden):
        await ft.list_groups()
    assert await ft.list_groups() == []
    log = (await client.get("/sandbox/fivetran/_control/requests")).json()["data"]["items"]
    assert [(e["path"], e["status"]) for e in log] == [("/v1/groups", 403), ("/v1/groups", 200)]
    assert (await client.post("/sandbox/fivetran/_control/reset")).status_code == 200


async def test_shutdown_drains_pending_webhook_deliveries(settings: Settings) -> None:
    from app.main import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        ft: FivetranClient = application.state.fivetran
        simulator = application.state.fivetran_simulator
        # A slow webhook target (served in-process by the simulator's fault injection).
        await ft.create_account_webhook(
            f"{BASE_URL}/sandbox/fivetran/slow-target", ["create_connector"], secret="s"
        )
        await application.state.http.post(
            f"{BASE_URL}/sandbox/fivetran/_control/faults",
            json={
                "method": "POST",
                "path_regex": "^/slow-target$",
                "status": 200,
                "delay_seconds": 0.3,
                "count": 1,
            },
        )
        group = await ft.create_group("drain")
        body = build_create_payload(
            "postgres", group_id=group["id"], schema="pg", config={"host": "h", "user": "u"}
        )
        await ft.create_connection(body)
        assert simulator.webhooks._pending, "delivery runs in the background"
    assert not simulator.webhooks._pending
    assert [d["event"] for d in simulator.state.deliveries] == ["create_connector"]
    assert simulator.state.deliveries[0]["status"] == 200
