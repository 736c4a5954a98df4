"""The simulator's sync clock: a sync finishes by itself and reports through the signed
``sync_end`` webhook, like a day at work (no control API call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.sandbox.conftest import CONTROL, SIM_AUTH, eventually

STRIPE = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_l"}}


async def _state(api: Any) -> dict[str, Any]:
    r = await api.get(f"{CONTROL}/state")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


async def _connection(api: Any) -> dict[str, Any]:
    assert (await api.put("/v1/end-users/acme", json={})).status_code == 201
    r = await api.post("/v1/connections", json=STRIPE)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_a_sync_finishes_by_itself_and_reports_through_the_webhook(
    make_api: Callable[..., Any],
) -> None:
    _, api = await make_api(
        sandbox={"sync_seconds": 0.2}, events={"register_webhook_on_startup": True}
    )
    await eventually(lambda: _webhooks(api), what="our webhook registered at the simulator")
    conn = await _connection(api)
    cid, fid = conn["id"], conn["fivetran_connection_id"]

    async def synced_after(previous: str | None) -> Any:
        async def probe() -> str | None:
            body = (await api.get(f"/v1/connections/{cid}")).json()
            last = body["last_sync_succeeded_at"]
            return last if last and (previous is None or last > previous) else None

        return await eventually(probe, what="a sync_end webhook reached our API")

    # The first unpause started the historical sync; it ends by itself…
    first = await synced_after(None)
    # …and so does a sync the caller asks for.
    r = await api.post(f"/v1/connections/{cid}/sync", json={})
    assert r.status_code == 202, r.text
    await synced_after(first)

    assert (await _state(api))["syncing"] == []
    remote = await api.get(
        f"/sandbox/fivetran/v1/connections/{fid}",
        auth=SIM_AUTH,
        headers={"Authorization": "", "Accept": "application/json"},
    )
    assert remote.json()["data"]["status"]["sync_state"] == "scheduled"
    deliveries = (await api.get(f"{CONTROL}/deliveries")).json()["data"]["items"]
    ends = [d for d in deliveries if d["event"] == "sync_end" and d["connector_id"] == fid]
    assert [d["status"] for d in ends] == [200, 200]  # signed and accepted by our endpoint
    events = (await api.get("/v1/events", params={"connection_id": cid})).json()
    kinds = [e["type"] for e in events["items"]]
    assert kinds.count("connection.sync_succeeded") == 2, kinds
    assert (await api.get(f"/v1/connections/{cid}")).json()["state"] == "connected"


async def _webhooks(api: Any) -> int:
    return int((await _state(api))["webhooks"])


async def test_sync_resync_and_first_unpause_arm_the_clock_and_control_api_wins(
    make_api: Callable[..., Any],
) -> None:
    app, api = await make_api(sandbox={"sync_seconds": 3600})
    clock = app.state.fivetran_simulator.syncs
    conn = await _connection(api)
    cid, fid = conn["id"], conn["fivetran_connection_id"]
    # Created paused, tested, then unpaused by us: the first unpause starts the historical
    # sync, as at Fivetran.
    assert conn["paused"] is False and clock.pending() == [fid]
    r = await api.post(f"{CONTROL}/connections/{fid}/sync-result", json={"status": "SUCCESSFUL"})
    assert r.status_code == 200 and clock.pending() == []  # the control API finished it

    assert (await api.post(f"/v1/connections/{cid}/sync", json={})).status_code == 202
    assert clock.pending() == [fid]
    await api.post(f"{CONTROL}/connections/{fid}/sync-result", json={"status": "FAILED"})
    assert clock.pending() == []
    assert (await api.post(f"/v1/connections/{cid}/resync", json={})).status_code == 202
    assert clock.pending() == [fid]
    # A pause/unpause later is not a first unpause: no new sync.
    await api.post(f"{CONTROL}/connections/{fid}/sync-result", json={"status": "SUCCESSFUL"})
    await api.patch(f"/v1/connections/{cid}", json={"paused": True})
    await api.patch(f"/v1/connections/{cid}", json={"paused": False})
    assert clock.pending() == []


async def test_zero_seconds_leaves_syncs_to_the_control_api(make_api: Callable[..., Any]) -> None:
    app, api = await make_api(sandbox={"sync_seconds": 0})
    conn = await _connection(api)
    fid = conn["fivetran_connection_id"]
    assert (await api.post(f"/v1/connections/{conn['id']}/sync", json={})).status_code == 202
    assert app.state.fivetran_simulator.syncs.pending() == []
    assert (await _state(api))["syncing"] == [fid]
    await api.post(f"{CONTROL}/connections/{fid}/sync-result", json={"status": "SUCCESSFUL"})
    assert (await _state(api))["syncing"] == []
