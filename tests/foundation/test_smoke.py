from __future__ import annotations

import httpx


async def test_credentials_connection_stripe(api: httpx.AsyncClient) -> None:
    r = await api.put("/v1/end-users/acme-1", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    assert r.json()["fivetran_group_id"]
    r = await api.get("/v1/sources/stripe")
    assert r.status_code == 200, r.text
    r = await api.post(
        "/v1/connections",
        json={"end_user": "acme-1", "service": "stripe", "credentials": {"api_key": "sk_test"}},
    )
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "connected"
