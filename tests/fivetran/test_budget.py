"""The client-side hourly request budget: in-process token bucket and the Redis window."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.config import Settings
from app.fivetran.budget import (
    CombinedBudget,
    LocalTokenBucket,
    RateBucket,
    RedisRateBucket,
    RedisWindowBudget,
)
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
    assert isinstance(local, CombinedBudget)  # hourly + per second (default 50/s)
    assert isinstance(local.hourly, LocalTokenBucket) and isinstance(local.per_second, RateBucket)
    assert local.per_second.rate == 50 and local.per_second.capacity == 50
    hourly_only = build_budget(Settings(mode="sandbox", fivetran={"requests_per_second": 0}))
    assert isinstance(hourly_only, LocalTokenBucket)
    shared = build_budget(
        Settings(
            mode="sandbox",
            redis_url=REDIS_URL,
            fivetran={
                "hourly_request_budget": 5,
                "budget_redis_prefix": prefix,
                "requests_per_second": 200,
                "requests_burst": 20,
            },
        )
    )
    assert isinstance(shared, CombinedBudget)
    assert isinstance(shared.per_second, RedisRateBucket)
    assert shared.per_second.rate == 200 and shared.per_second.capacity == 20
    assert shared.per_second.key == f"{prefix}:rate"
    await shared.acquire()
    await shared.aclose()
    shared = build_budget(
        Settings(
            mode="sandbox",
            redis_url=REDIS_URL,
            fivetran={
                "hourly_request_budget": 5,
                "budget_redis_prefix": prefix,
                "requests_per_second": 0,
            },
        )
    )
    assert isinstance(shared, RedisWindowBudget) and shared.per_hour == 5
    await shared.acquire()
    assert await shared.used() == 2  # one more than the combined budget above took
    await shared.aclose()
    assert credentials(Settings(mode="sandbox")) == ("sandbox_key", "sandbox_secret")
    configured = Settings(mode="sandbox", fivetran={"api_key": "k", "api_secret": "s"})
    assert credentials(configured) == ("k", "s")
    production = Settings.model_construct(mode="production", fivetran=Settings().fivetran)
    with pytest.raises(ValueError, match="API_KEY"):
        credentials(production)


# ------------------------------------------------------------------------ the per-second budget


async def test_rate_bucket_spends_the_burst_then_spaces_callers_at_the_rate() -> None:
    clock = Clock()
    bucket = RateBucket(200, 20, max_wait=5, sleep=clock.sleep, clock=clock)
    for _ in range(20):
        await bucket.acquire()  # the burst: no wait
    assert clock.sleeps == []
    for _ in range(10):
        await bucket.acquire()  # then one every 1/200 s (the fake sleep advances the clock)
    assert clock.sleeps == pytest.approx([0.005] * 10)


async def test_rate_bucket_reserves_in_arrival_order_without_a_lock() -> None:
    """Concurrent callers each reserve the next slot: waits grow by 1/rate, nobody bursts."""
    clock = Clock()
    bucket = RateBucket(10, 1, max_wait=5, sleep=clock.sleep, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]  # five callers at the same instant
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


async def test_rate_bucket_refuses_a_wait_beyond_max_wait_and_keeps_the_token() -> None:
    clock = Clock()
    bucket = RateBucket(1, 1, max_wait=0.5, sleep=clock.sleep, clock=clock)
    await bucket.acquire()
    with pytest.raises(FivetranBudgetExhausted) as info:
        await bucket.acquire()  # the next token is 1 s away
    assert "per-second" in info.value.message and info.value.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    await bucket.acquire()  # the refused call reserved nothing
    assert clock.sleeps == []


async def test_combined_budget_takes_both_and_the_hourly_one_first() -> None:
    clock = Clock()
    hourly = LocalTokenBucket(2, max_wait=0, sleep=clock.sleep, clock=clock)
    per_second = RateBucket(100, 100, max_wait=5, sleep=clock.sleep, clock=clock)
    budget = CombinedBudget(hourly, per_second)
    await budget.acquire()
    await budget.acquire()
    with pytest.raises(FivetranBudgetExhausted) as info:
        await budget.acquire()
    assert "hourly" in info.value.message
    assert per_second.reserve() == 0 and per_second._tokens == pytest.approx(97)


async def test_redis_rate_bucket_is_shared_by_replicas(redis: Any, prefix: str) -> None:
    from redis.asyncio import Redis

    other = Redis.from_url(REDIS_URL)
    try:
        # 0.01 tokens/s: the fourth request would wait ~100 s, beyond max_wait → refused.
        a = RedisRateBucket(redis, 0.01, 3, prefix=prefix, max_wait=5)
        b = RedisRateBucket(other, 0.01, 3, prefix=prefix, max_wait=5)
        await a.acquire()
        await b.acquire()
        await a.acquire()
        with pytest.raises(FivetranBudgetExhausted) as info:
            await b.acquire()  # the other replica sees the shared bucket
        assert 90 < info.value.retry_after <= 100.1  # type: ignore[operator]
        assert 0 < await redis.pttl(f"{prefix}:rate") <= 400_000
    finally:
        await other.aclose()


async def test_redis_rate_bucket_sleeps_until_the_reserved_token(redis: Any, prefix: str) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    bucket = RedisRateBucket(redis, 2, 1, prefix=prefix, max_wait=5, sleep=fake_sleep)
    await bucket.acquire()
    await bucket.acquire()  # reserves the token due in ~0.5 s
    await bucket.acquire()  # and the one after it, ~1 s
    assert len(sleeps) == 2 and 0.4 < sleeps[0] <= 0.5 and 0.9 < sleeps[1] <= 1.0


async def test_redis_rate_bucket_falls_back_to_the_local_bucket() -> None:
    from redis.asyncio import Redis

    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    bucket = RedisRateBucket(dead, 0.01, 2, prefix="pbf:test:dead", max_wait=0)
    await bucket.acquire()
    await bucket.acquire()
    with pytest.raises(FivetranBudgetExhausted):
        await bucket.acquire()
    await dead.aclose()
