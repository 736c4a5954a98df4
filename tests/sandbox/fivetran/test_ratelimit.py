"""The simulator's rate limit: 429 TooManyRequests with Retry-After above the configured rate,
control API validation, and a client whose per-second budget stays under it."""

from __future__ import annotations

import base64

import httpx
import pytest

from app.fivetran.budget import CombinedBudget, LocalTokenBucket, RateBucket
from app.fivetran.client import FivetranClient
from app.fivetran.errors import FivetranTooManyRequests
from app.sandbox.fivetran.ratelimit import SimulatedRateLimit
from tests.fixtures.fivetran import SIM_BASE, Env

pytestmark = pytest.mark.db_independent  # never uses the database under test

AUTH = {"Authorization": "Basic " + base64.b64encode(b"sandbox_key:sandbox_secret").decode()}


async def _groups(env: Env) -> httpx.Response:
    return await env.raw.get(f"{SIM_BASE}/v1/groups", headers=AUTH)


async def test_over_the_limit_is_429_with_retry_after_and_logged(env: Env) -> None:
    r = await env.control("POST", "/rate-limit", {"per_second": 0.5, "burst": 2})
    assert r.status_code == 200 and r.json()["data"]["per_second"] == 0.5, r.text
    assert (await _groups(env)).status_code == 200
    assert (await _groups(env)).status_code == 200
    refused = await _groups(env)
    assert refused.status_code == 429
    assert refused.json()["code"] == "TooManyRequests"
    assert refused.headers["Retry-After"] == "2"  # whole seconds, as Fivetran sends it
    # The control API is never limited, and the refusal is in the request log.
    state = (await env.control("GET", "/rate-limit")).json()["data"]
    assert state == {"per_second": 0.5, "burst": 2, "allowed": 2, "refused": 1}
    assert [x["status"] for x in env.requests("GET", "/v1/groups")] == [200, 200, 429]
    # Off again: no limit.
    assert (await env.control("POST", "/rate-limit", {"per_second": 0})).status_code == 200
    assert (await _groups(env)).status_code == 200


async def test_unauthenticated_requests_take_no_token(env: Env) -> None:
    await env.control("POST", "/rate-limit", {"per_second": 0.1, "burst": 1})
    assert (await env.raw.get(f"{SIM_BASE}/v1/groups")).status_code == 401
    assert (await _groups(env)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"per_second": "fast"},
        {"per_second": True},
        {"per_second": -1},
        {"per_second": 10, "burst": 0},
        {"per_second": 10, "burst": "x"},
        [1],
    ],
)
async def test_bad_rate_limit_bodies_are_400(env: Env, body: object) -> None:
    r = await env.control("POST", "/rate-limit", body)
    assert r.status_code == 400 and r.json()["code"] == "InvalidInput", r.text
    assert (await env.control("GET", "/rate-limit")).json()["data"]["per_second"] == 0


def test_bucket_refills_on_its_clock() -> None:
    now = [100.0]
    limit = SimulatedRateLimit(clock=lambda: now[0])
    limit.configure(10, 1)
    assert limit.take() is None
    assert limit.take() == pytest.approx(0.1)
    now[0] += 0.1
    assert limit.take() is None


async def test_client_does_not_wait_a_retry_after_beyond_its_limit(env: Env) -> None:
    """Retry-After 100 s is beyond the client's ``max_retry_after`` (30 s): it raises the 429
    with Fivetran's Retry-After instead of waiting or retrying."""
    await env.control("POST", "/rate-limit", {"per_second": 0.01, "burst": 1})
    await env.client.list_groups()
    with pytest.raises(FivetranTooManyRequests) as info:
        await env.client.list_groups()
    assert info.value.retry_after == 100
    assert [x["status"] for x in env.requests("GET", "/v1/groups")] == [200, 429]


async def test_a_client_paced_by_its_per_second_budget_gets_no_429(env: Env) -> None:
    """The client's budget (20/s, burst 1) under the simulator's limit (20/s, burst 5): real
    sleeps space 30 requests so that none is refused."""
    await env.control("POST", "/rate-limit", {"per_second": 20, "burst": 5})
    client = FivetranClient(
        env.raw,
        base_url=SIM_BASE,
        api_key="sandbox_key",
        api_secret="sandbox_secret",
        max_retries=0,
        budget=CombinedBudget(LocalTokenBucket(10_000), RateBucket(20, 1)),
    )
    for _ in range(30):
        await client.account_info()
    state = (await env.control("GET", "/rate-limit")).json()["data"]
    assert state["refused"] == 0 and state["allowed"] == 30
