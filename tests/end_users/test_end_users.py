"""End-users: deterministic names, destinations, group strategies' edges, idempotency TTL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import update

from app.config import Settings
from app.end_users import names
from tests.fixtures.onboarding import Simulator, problem

_FIVETRAN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_slugs_are_fivetran_safe_deterministic_and_collision_free() -> None:
    ids = ["a-b", "a_b", "A.B", "a b", "1abc", "ünïcode", "x" * 200, "a@b.c", "a+b"]
    slugs = [names.end_user_slug(i) for i in ids]
    assert len(set(slugs)) == len(ids)
    for slug in slugs:
        assert _FIVETRAN_NAME.match(slug), slug
        assert len(slug) <= 40
    assert names.end_user_slug("a-b") == names.end_user_slug("a-b")
    for strategy in ("per_end_user", "shared", "per_service"):
        for slot in (1, 2):
            assert _FIVETRAN_NAME.match(
                names.schema_name(strategy, slug=slugs[0], service="google_ads", slot=slot)
            )
    assert names.schema_name("per_end_user", slug="s", service="stripe", slot=2) == "stripe_2"


async def test_own_destination_instead_of_the_template(
    api: httpx.AsyncClient, sim: Simulator
) -> None:
    r = await api.put(
        "/v1/end-users/bring-own",
        json={
            "name": "BYO",
            "destination": {
                "service": "snowflake",
                "region": "AWS_US_EAST_1",
                "time_zone_offset": "-5",
                "config": {
                    "host": "acct.snowflakecomputing.com",
                    "port": 443,
                    "database": "fivetran",
                    "user": "ft",
                    "password": "pw-secret",
                },
            },
        },
    )
    assert r.status_code == 201, r.text
    assert "pw-secret" not in r.text
    group = r.json()["fivetran_group_id"]
    dest = await sim.get(f"/v1/destinations/{group}")
    assert dest.status_code == 200, dest.text
    assert dest.json()["data"]["service"] == "snowflake"
    # The template destination of another end-user.
    r = await api.put("/v1/end-users/templated", json={})
    dest = await sim.get(f"/v1/destinations/{r.json()['fivetran_group_id']}")
    assert dest.json()["data"]["service"] == "big_query"
    # A destination cannot be swapped afterwards.
    r = await api.put(
        "/v1/end-users/templated",
        json={"destination": {"service": "snowflake", "config": {}}},
    )
    problem(r, 409, "destination_exists")


async def test_fivetran_failure_during_put_is_retry_safe(
    api: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Awaitable[int]]
) -> None:
    # The group gets created but the destination create fails: nothing of ours is written.
    await sim.fault(
        method="POST", path_regex=r"^/v1/destinations/?$", status=400, count=1, code="InvalidInput"
    )
    r = await api.put("/v1/end-users/retry-me", json={})
    problem(r, 422, "invalid_destination")
    assert await count_rows("end_users") == 0
    # The retry adopts the group created by the first attempt (deterministic name).
    r = await api.put("/v1/end-users/retry-me", json={})
    assert r.status_code == 201, r.text
    groups = (await sim.get("/v1/groups")).json()["data"]["items"]
    named = [
        g for g in groups if g["name"] == names.end_user_group_name(names.end_user_slug("retry-me"))
    ]
    assert len(named) == 1 and named[0]["id"] == r.json()["fivetran_group_id"]


async def test_concurrent_creates_with_one_idempotency_key(
    app: FastAPI, api: httpx.AsyncClient, sim: Simulator
) -> None:
    assert (await api.put("/v1/end-users/acme", json={})).status_code == 201
    body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk"}}
    headers = {"Idempotency-Key": "same"}
    results = await asyncio.gather(
        *(api.post("/v1/connections", json=body, headers=headers) for _ in range(3))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, [r.text for r in results]
    ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(ids) == 1
    conns = (await api.get("/v1/connections", params={"end_user": "acme"})).json()["items"]
    assert len(conns) == 1
    assert len(await sim.connections_in(conns[0]["group_id"])) == 1


async def test_idempotency_keys_expire(
    app: FastAPI, api: httpx.AsyncClient, count_rows: Callable[..., Awaitable[int]]
) -> None:
    from app.db import utcnow
    from app.kit.models import IdempotencyKey

    assert (await api.put("/v1/end-users/acme", json={})).status_code == 201
    body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk"}}
    first = await api.post("/v1/connections", json=body, headers={"Idempotency-Key": "old"})
    assert first.status_code == 201
    async with app.state.sessionmaker() as s, s.begin():
        await s.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    # Past its TTL the key is forgotten: the same body creates a second connection.
    second = await api.post("/v1/connections", json=body, headers={"Idempotency-Key": "old"})
    assert second.status_code == 201 and second.json()["id"] != first.json()["id"]
    assert await count_rows("idempotency_keys") == 1
    problem(
        await api.post("/v1/connections", json=body, headers={"Idempotency-Key": "x" * 300}),
        400,
        "invalid_idempotency_key",
    )


async def test_shared_strategy_put_rejects_a_destination(
    settings_factory: Callable[..., Settings],
) -> None:
    from app.callers.service import create_api_key
    from app.main import create_app

    application = create_app(settings_factory(onboarding={"group_strategy": "shared"}))
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="t", scopes=["admin"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
        ) as c:
            r = await c.put("/v1/end-users/x", json={"destination": {"service": "snowflake"}})
            problem(r, 422, "destination_not_supported")


async def test_end_users_whose_short_slugs_collide_never_share_a_group(
    api: httpx.AsyncClient,
) -> None:
    """8 hex digits of SHA-256 collide among ~10^5 ids sharing a long prefix (this pair was
    found at the 77,419th). The second end-user must get its own names — not adopt the first
    one's Fivetran group (and destination) by name."""
    a, b = "acme-production-customer-74074", "acme-production-customer-77419"
    assert names.end_user_slug(a) == names.end_user_slug(b)  # the collision
    ra = await api.put(f"/v1/end-users/{a}", json={})
    rb = await api.put(f"/v1/end-users/{b}", json={})
    assert ra.status_code == 201 and rb.status_code == 201, (ra.text, rb.text)
    assert ra.json()["fivetran_group_id"] != rb.json()["fivetran_group_id"]
    assert rb.json()["fivetran_group_id"] is not None
