"""Abandoned and failed connect sessions release their slot and schema name; the connection
list filters by state and service."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI

from app.db import utcnow
from tests.onboarding.conftest import RETURN_TO, oauth_connect, problem


async def _start(api: httpx.AsyncClient) -> dict[str, str]:
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": "acme", "service": "salesforce", "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_abandoned_sessions_do_not_pile_up_schema_names(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    from app.onboarding.connect.service import expire_stale_sessions

    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    for _ in range(3):
        await _start(api)
        async with app.state.sessionmaker() as session:
            assert (
                await expire_stale_sessions(session, app.state, now=utcnow() + timedelta(days=2))
                == 1
            )
            await session.commit()
    query = await oauth_connect(api, "acme", "salesforce")
    assert query["status"] == "connected", query
    r = await api.get(f"/v1/connections/{query['connection_id']}")
    assert r.json()["schema"] == "salesforce", r.json()  # not salesforce_4

    r = await api.get("/v1/connections", params={"state": "setup_failed"})
    failed = r.json()["items"]
    assert len(failed) == 3 and all(c["state_reason"] == "oauth_failed:expired" for c in failed)
    r = await api.get("/v1/connections", params={"state": "connected", "service": "salesforce"})
    assert [c["id"] for c in r.json()["items"]] == [query["connection_id"]]
    r = await api.get("/v1/connections", params={"service": "hubspot"})
    assert r.json()["items"] == []
    problem(await api.get("/v1/connections", params={"state": "nearly"}), 422)

    # A failed connection authorized again gets a free slot (and schema) of its own.
    again = failed[0]["id"]
    r = await api.post(f"/v1/connections/{again}/reauthorize", json={"return_to": RETURN_TO})
    assert r.status_code == 201, r.text
    r = await api.get(f"/v1/connections/{again}")
    assert r.json()["schema"] == "salesforce_2", r.json()
