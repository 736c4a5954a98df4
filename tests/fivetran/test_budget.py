"""The client-side hourly request budget: in-process token bucket and the Redis window."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import Settings
from app.fivetran.budget import LocalTokenBucket, RedisWindowBudget
from app.fivetran.errors import FivetranBudgetExhausted, FivetranTooManyRequests
from app.fivetran.startup import build_budget, credentials

pytestmark = pytest.mark.db_independent  # never uses the database under test

REDIS_URL = "redis://127.0.0.1:6379/0"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_local_bucket_spends_refills_and_bounds_the_wait() -> None:
    clock = Clock()
    bucket = LocalTokenBucket(3600, max_wait=5, sleep=clock.sleep, clock=clock)  # 1 token/s
    for _ in range(3600):
        await bucket.acquire()
    assert bucket.available < 1
    await bucket.acquire()  # waits ~1 s for the next token (fake sleep advances the clock)
    assert clock.sleeps and 0.9 < clock.sleeps[-1] <= 1.0
    strict = LocalTokenBucket(2, max_wait=0, sleep=clock.sleep, clock=clock)
    await strict.acquire()
    await strict.acquire()
    with pytest.raises(FivetranBudgetExhausted) as info:
        await strict.acquire()
    assert isinstance(info.value, FivetranTooManyRequests)
    assert info.value.retry_after == pytest.approx(1800, rel=0.01)  # 2/h → one per 30 min
    clock.now += 1800
    await strict.acquire()


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Any) -> AsyncIterator[str]:
    value = f"pbf:test:budget:{uuid.uuid4().hex}"
    yield value
    keys = [k async for k in redis.scan_iter(match=f"{value}:*")]
    if keys:
        await redis.delete(*keys)


async def test_redis_window_is_shared_by_replicas(redis: Any, prefix: str) -> None:
    from redis.asyncio import Redis

    clock = Clock(now=7200.0 * 1000 + 10)
    other = Redis.from_url(REDIS_URL)
    try:
        a = RedisWindowBudget(redis, 3, prefix=prefix, max_wait=0, sleep=clock.sleep, clock=clock)
        b = RedisWindowBudget(other, 3, prefix=prefix, max_wait=0, sleep=clock.sleep, clock=clock)
        await a.acquire()
        await b.acquire()
        await a.acquire()
        assert await a.used() == 3
        with pytest.raises(FivetranBudgetExhausted) as info:
            await b.acquire()  # the other replica sees the shared count
        assert 3500 < info.value.retry_after <= 3600  # type: ignore[operator]
        ttl = await redis.ttl(f"{prefix}:{int(clock.now // 3600)}")
        assert 0 < ttl <= 3660
        clock.now += 3600  # next window
        await b.acquire()
    finally:
        await other.aclose()


async def test_redis_window_waits_when_the_next_window_is_near(redis: Any, prefix: str) -> None:
    clock = Clock(now=3600.0 * 5000 - 2)  # two seconds before the window ends
    budget = RedisWindowBudget(redis, 1, prefix=prefix, max_wait=10, sleep=clock.sleep, clock=clock)
    await budget.acquire()
    await budget.acquire()  # waits for the next window instead of failing
    assert len(clock.sleeps) == 1 and 1.9 < clock.sleeps[0] < 2.1


async def test_redis_down_falls_back_to_the_local_bucket() -> None:
    from redis.asyncio import Redis

    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    budget = RedisWindowBudget(dead, 2, prefix="pbf:test:dead", max_wait=0)
    await budget.acquire()
    await budget.acquire()
    with pytest.raises(FivetranBudgetExhausted):
        await budget.acquire()
    await budget.aclose()


async def test_build_budget_and_credentials_follow_settings(redis: Any, prefix: str) -> None:
    local = build_budget(Settings(mode="sandbox"))
    assert isinstance(local, LocalTokenBucket)
    shared = build_budget(
        Settings(
            mode="sandbox",
            redis_url=REDIS_URL,
            fivetran={"hourly_request_budget": 5, "budget_redis_prefix": prefix},
        )
    )
    assert isinstance(shared, RedisWindowBudget) and shared.per_hour == 5
    await shared.acquire()
    assert await shared.used() == 1
    await shared.aclose()
    assert credentials(Settings(mode="sandbox")) == ("sandbox_key", "sandbox_secret")
    configured = Settings(mode="sandbox", fivetran={"api_key": "k", "api_secret": "s"})
    assert credentials(configured) == ("k", "s")
    production = Settings.model_construct(mode="production", fivetran=Settings().fivetran)
    with pytest.raises(ValueError, match="API_KEY"):
        credentials(production)
