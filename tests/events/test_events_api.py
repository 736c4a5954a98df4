"""``GET /v1/events`` (filters, cursor, restricted keys), redeliver (write scope), and
``GET /v1/event-endpoints`` (admin, never secrets)."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.events import RECEIVER_SECRET, RECEIVER_URL, emit_events, endpoint_config


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_list_filters_and_cursor(events_app, events_client, worker_for, auth_headers) -> None:
    a = await emit_events(events_app, [("connection.created", "con_A")] * 3)
    b = await emit_events(events_app, [("connection.broken", "con_B")])
    c = events_client
    r = await c.get("/v1/events", params={"limit": 2}, headers=auth_headers)
    page1 = r.json()
    assert [e["id"] for e in page1["items"]] == a[:2] and page1["next_cursor"]
    r = await c.get(
        "/v1/events", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=auth_headers
    )
    page2 = r.json()
    assert [e["id"] for e in page2["items"]] == [a[2], b[0]] and page2["next_cursor"] is None

    r = await c.get("/v1/events", params={"connection_id": "con_B"}, headers=auth_headers)
    assert [e["id"] for e in r.json()["items"]] == b
    r = await c.get("/v1/events", params={"type": "connection.broken"}, headers=auth_headers)
    assert [e["id"] for e in r.json()["items"]] == b
    r = await c.get("/v1/events", params={"status": "pending"}, headers=auth_headers)
    assert len(r.json()["items"]) == 4
    await worker_for(events_app).run_until_idle()
    r = await c.get("/v1/events", params={"status": "delivered"}, headers=auth_headers)
    items = r.json()["items"]
    assert len(items) == 4
    assert items[0]["deliveries"][0]["endpoint_id"] == "main"
    assert items[0]["deliveries"][0]["status"] == "delivered"
    r = await c.get("/v1/events", params={"status": "pending"}, headers=auth_headers)
    assert r.json()["items"] == []

    for bad in ({"cursor": "!!!"}, {"type": "nope"}, {"status": "nope"}, {"limit": 0}):
        r = await c.get("/v1/events", params=bad, headers=auth_headers)
        assert r.status_code in (400, 422), (bad, r.text)


async def test_restricted_key_sees_only_its_end_users(
    events_app, events_client, make_api_key
) -> None:
    mine = await emit_events(events_app, [("connection.created", "con_1")], end_user="tenant1-a")
    other = await emit_events(events_app, [("connection.created", "con_2")], end_user="tenant2-b")
    key = _bearer(await make_api_key(["read", "write"], end_user_prefix="tenant1-"))
    c = events_client
    r = await c.get("/v1/events", headers=key)
    assert [e["id"] for e in r.json()["items"]] == mine
    r = await c.get("/v1/events", params={"end_user": "tenant2-b"}, headers=key)
    assert r.json()["items"] == []
    r = await c.get("/v1/events", params={"connection_id": "con_2"}, headers=key)
    assert r.json()["items"] == []
    assert (await c.get(f"/v1/events/{other[0]}", headers=key)).status_code == 404
    assert (await c.post(f"/v1/events/{other[0]}/redeliver", headers=key)).status_code == 404
    assert (await c.get(f"/v1/events/{mine[0]}", headers=key)).status_code == 200
    # A prefix with LIKE wildcards matches literally.
    wild = _bearer(await make_api_key(["read"], end_user_prefix="tenant_"))
    assert (await c.get("/v1/events", headers=wild)).json()["items"] == []


async def test_scopes(events_app, events_client, make_api_key) -> None:
    [event_id] = await emit_events(events_app, [("connection.created", "con_1")])
    read = _bearer(await make_api_key(["read"]))
    write = _bearer(await make_api_key(["write"]))
    c = events_client
    assert (await c.get("/v1/events")).status_code == 401
    assert (await c.get("/v1/events", headers=read)).status_code == 200
    assert (await c.post(f"/v1/events/{event_id}/redeliver", headers=read)).status_code == 403
    assert (await c.post(f"/v1/events/{event_id}/redeliver", headers=write)).status_code == 202
    assert (await c.get("/v1/event-endpoints", headers=write)).status_code == 403
    r = await c.post(
        f"/v1/events/{event_id}/redeliver", json={"endpoint_id": "nope"}, headers=write
    )
    assert r.status_code == 422
    assert (await c.post("/v1/events/evt_missing/redeliver", headers=write)).status_code == 404


@pytest.fixture
async def two_endpoint_app(events_settings, receiver):
    from app.main import create_app

    settings = events_settings(
        endpoints=[
            endpoint_config(secrets=[RECEIVER_SECRET, "whsec_previous"]),
            endpoint_config(
                id="alerts", url=RECEIVER_URL + "?alerts", events=["connection.broken"]
            ),
        ]
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        yield app


async def test_endpoints_listing_never_shows_secrets(
    two_endpoint_app, receiver, worker_for, make_api_key
) -> None:
    app = two_endpoint_app
    await emit_events(app, [("connection.created", "con_1"), ("connection.broken", "con_1")])
    admin = _bearer(await make_api_key(["admin"]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as c:
        receiver.down_status = 503
        await worker_for(app).run_deliveries_once()
        r = await c.get("/v1/event-endpoints", headers=admin)
        assert r.status_code == 200
        assert RECEIVER_SECRET not in r.text and "whsec_previous" not in r.text
        items = {e["id"]: e for e in r.json()["items"]}
        assert items["main"]["secrets_configured"] == 2
        assert items["main"]["events"] is None and items["main"]["pending"] == 2
        assert items["alerts"]["events"] == ["connection.broken"]
        assert items["alerts"]["pending"] == 1
        # The created event is not for 'alerts': one delivery row, to 'main' only.
        r = await c.get("/v1/events", params={"type": "connection.created"}, headers=admin)
        assert [d["endpoint_id"] for d in r.json()["items"][0]["deliveries"]] == ["main"]


async def test_rotation_overlap_signs_with_both_secrets(
    two_endpoint_app, receiver, worker_for
) -> None:
    receiver.secrets = ["whsec_previous"]  # this receiver has not rotated yet
    await emit_events(two_endpoint_app, [("connection.created", "con_1")])
    await worker_for(two_endpoint_app).run_until_idle()
    assert [r.signature_ok for r in receiver.received] == [True]
