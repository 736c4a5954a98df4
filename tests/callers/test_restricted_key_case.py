"""A key restricted to ``tenantA_`` never lists ``TENANTA_…`` (SQLite's LIKE ignores case)."""

from __future__ import annotations


async def test_prefix_restriction_is_case_sensitive_in_lists(client, auth_headers, make_api_key):
    for ext in ("tenantA_1", "TENANTA_x", "tenanta_y"):
        r = await client.put(f"/v1/end-users/{ext}", json={"name": ext}, headers=auth_headers)
        assert r.status_code in (200, 201), r.text
        r = await client.post(
            "/v1/connections",
            json={"end_user": ext, "service": "stripe", "credentials": {"api_key": "sk_x"}},
            headers=auth_headers,
        )
        assert r.status_code == 201, r.text
    key = await make_api_key(["read"], end_user_prefix="tenantA_")
    restricted = {"Authorization": f"Bearer {key}"}

    users = (await client.get("/v1/end-users", headers=restricted)).json()["items"]
    assert [u["external_id"] for u in users] == ["tenantA_1"]

    conns = (await client.get("/v1/connections", headers=restricted)).json()["items"]
    assert {c["end_user"] for c in conns} == {"tenantA_1"}

    events = (await client.get("/v1/events", headers=restricted)).json()["items"]
    assert events, "the admin's creates emitted events"
    assert {e["data"].get("end_user") for e in events} <= {"tenantA_1"}

    r = await client.get("/v1/end-users/TENANTA_x", headers=restricted)
    assert r.status_code == 404
