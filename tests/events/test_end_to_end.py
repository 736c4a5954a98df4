"""End to end through N's API and F's simulator: a simulated Fivetran sync reaches our webhook
endpoint as a signed ``sync_end``, updates the connection, and goes out as a signed
``connection.sync_succeeded`` to the company's receiver. Also: reconciliation repairs a
state whose webhook was lost, and ``webhooks ensure`` is idempotent."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.events.models import FivetranWebhookReceipt
from app.events.registration import ensure_webhook, webhook_url

SIM = "/sandbox/fivetran"


async def _connection(c: httpx.AsyncClient, headers: dict[str, str], user: str = "acme") -> Any:
    r = await c.put(f"/v1/end-users/{user}", json={"name": user.title()}, headers=headers)
    assert r.status_code in (200, 201), r.text
    r = await c.post(
        "/v1/connections",
        json={"end_user": user, "service": "stripe", "credentials": {"api_key": "sk_test_1"}},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    conn = r.json()
    assert conn["state"] == "connected", conn
    return conn


async def _sim(c: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
    r = await c.request(method, f"{SIM}/_control{path}", **kw)
    assert r.status_code < 300, r.text
    return r


async def test_simulated_sync_reaches_the_receiver(
    events_app, events_client, receiver, worker_for, auth_headers
) -> None:
    c = events_client
    await ensure_webhook(events_app.state.fivetran, events_app.state.settings)
    conn = await _connection(c, auth_headers)
    assert conn["last_sync_succeeded_at"] is None

    await _sim(
        c,
        "POST",
        f"/connections/{conn['fivetran_connection_id']}/sync-result",
        json={"status": "SUCCESSFUL"},
    )
    await _sim(c, "POST", "/webhooks/drain")
    deliveries = (await _sim(c, "GET", "/deliveries")).json()["data"]["items"]
    assert all(d["status"] == 200 for d in deliveries), deliveries  # signatures accepted
    # Sent concurrently (like Fivetran, no order guarantee): sync_start may come last.
    assert sorted(d["event"] for d in deliveries if d["event"].startswith("sync_")) == [
        "sync_end",
        "sync_start",
    ]

    r = await c.get(f"/v1/connections/{conn['id']}", headers=auth_headers)
    synced = r.json()
    assert synced["last_sync_succeeded_at"] is not None
    assert synced["sync_state"] == "scheduled"

    await worker_for(events_app).run_until_idle()
    mine = [x for x in receiver.accepted() if x.connection_id == conn["id"]]
    assert [x.type for x in mine] == [
        "connection.created",
        "connection.connected",
        "connection.sync_succeeded",
    ]
    assert receiver.rejected == 0
    succeeded = mine[-1].body["data"]
    assert (
        succeeded["last_sync_succeeded_at"].replace("Z", "+00:00")[:19]
        == (synced["last_sync_succeeded_at"].replace("Z", "+00:00")[:19])
    )
    assert succeeded["fivetran_connection_id"] == conn["fivetran_connection_id"]
    assert "api_key" not in str(mine) and "sk_test_1" not in str(mine)


async def test_failed_sync_and_break_are_reported(
    events_app, events_client, receiver, worker_for, auth_headers
) -> None:
    c = events_client
    await ensure_webhook(events_app.state.fivetran, events_app.state.settings)
    conn = await _connection(c, auth_headers)
    fid = conn["fivetran_connection_id"]
    await _sim(c, "POST", f"/connections/{fid}/sync-result", json={"status": "FAILED"})
    await _sim(c, "POST", "/webhooks/drain")
    await _sim(c, "POST", f"/connections/{fid}/break")
    await _sim(c, "POST", "/webhooks/drain")
    r = await c.get(f"/v1/connections/{conn['id']}", headers=auth_headers)
    assert r.json()["state"] == "broken"
    assert r.json()["last_sync_failed_at"] is not None
    await worker_for(events_app).run_until_idle()
    types = [x.type for x in receiver.accepted() if x.connection_id == conn["id"]]
    assert types[-2:] == ["connection.sync_failed", "connection.broken"]


async def test_reconciliation_repairs_a_dropped_webhook(
    events_app, events_client, receiver, worker_for, clock, auth_headers
) -> None:
    c = events_client
    await ensure_webhook(events_app.state.fivetran, events_app.state.settings)
    conn = await _connection(c, auth_headers)
    # The webhook's secret no longer matches ours: every Fivetran webhook is now refused.
    hooks = await events_app.state.fivetran.list_webhooks()
    await events_app.state.fivetran.update_webhook(hooks[0]["id"], {"secret": "wrong-secret"})
    await _sim(c, "POST", f"/connections/{conn['fivetran_connection_id']}/break")
    await _sim(c, "POST", "/webhooks/drain")
    deliveries = (await _sim(c, "GET", "/deliveries")).json()["data"]["items"]
    failures = [d for d in deliveries if d["event"] == "connection_failure"]
    assert [d["status"] for d in failures] == [401]
    r = await c.get(f"/v1/connections/{conn['id']}", headers=auth_headers)
    assert r.json()["state"] == "connected"  # the webhook was dropped

    worker = worker_for(events_app)
    assert await worker.reconcile_once() == 0  # fresh: nothing to do yet
    clock.advance(events_app.state.settings.events.reconcile_stale_after_seconds + 1)
    assert await worker.reconcile_once() == 1
    r = await c.get(f"/v1/connections/{conn['id']}", headers=auth_headers)
    assert r.json()["state"] == "broken"
    await worker.run_until_idle()
    types = [x.type for x in receiver.accepted() if x.connection_id == conn["id"]]
    assert types[-1] == "connection.broken"


async def test_webhooks_ensure_is_idempotent(events_app) -> None:
    client = events_app.state.fivetran
    settings = events_app.state.settings
    first = await ensure_webhook(client, settings)
    second = await ensure_webhook(client, settings)
    assert (first.action, second.action) == ("created", "updated")
    assert first.webhook_id == second.webhook_id
    hooks = [h for h in await client.list_webhooks() if h["url"] == webhook_url(settings)]
    assert len(hooks) == 1 and hooks[0]["active"] and hooks[0]["type"] == "account"
    assert set(hooks[0]["events"]) >= {"sync_end", "connection_failure"}
    # A group webhook is a separate registration, also idempotent.
    group = await client.create_group("events_grp")
    g1 = await ensure_webhook(client, settings, group_id=group["id"])
    g2 = await ensure_webhook(client, settings, group_id=group["id"])
    assert g1.action == "created" and g2.action == "updated" and g1.webhook_id == g2.webhook_id
    assert g1.webhook_id != first.webhook_id


async def test_unknown_connection_webhook_is_acknowledged(events_app, events_client) -> None:
    client = events_app.state.fivetran
    result = await ensure_webhook(client, events_app.state.settings)
    tested = await client.test_webhook(result.webhook_id, "sync_end")
    assert tested["succeed"] is True and tested["status"] == 200
    async with events_app.state.sessionmaker() as session:
        receipt = await session.scalar(select(FivetranWebhookReceipt))
    assert receipt is not None and receipt.outcome == "unknown_connection"


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
