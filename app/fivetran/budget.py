"""Client-side request budget: keeps the account under Fivetran's request limits.

Fivetran limits an account to 20,000 requests per hour (rolling; see the research notes on the
Fivetran API), and bursts hurt everyone sharing the account, so there are two budgets, both
taken before every attempt (``await budget.acquire()``):

* **hourly** (``fivetran.hourly_request_budget``, default 18,000, under Fivetran's limit):

  * :class:`LocalTokenBucket` — in-process token bucket (capacity = the hourly budget,
    refilled continuously at budget/3600 tokens per second);
  * :class:`RedisWindowBudget` — shared by every replica: a fixed one-hour window counted in
    Redis with one atomic Lua call (INCR + EXPIRE).

* **per second** (``fivetran.requests_per_second``, burst ``fivetran.requests_burst``; 0 turns
  it off): a token bucket that smooths bursts such as a fleet operation
  (:mod:`app.connections.fleet`):

  * :class:`RateBucket` — in-process;
  * :class:`RedisRateBucket` — one bucket shared by every replica, refilled on Redis's own
    clock (``TIME``) in one atomic Lua call, so replicas with skewed clocks agree.

  A caller that finds no token *reserves* the next one and sleeps until it is due, so
  concurrent callers are served in arrival order at exactly the rate, never in a burst.

:class:`CombinedBudget` takes the hourly budget, then the per-second one. When a budget is
used up, ``acquire`` waits for the next token if that wait is at most ``max_wait`` seconds,
else raises :class:`FivetranBudgetExhausted` (nothing was sent). If Redis is unreachable a
shared budget falls back to its local twin (logged) rather than stopping all Fivetran traffic.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from redis.asyncio import Redis

from app.fivetran.errors import FivetranBudgetExhausted

log = logging.getLogger("pbf.fivetran.budget")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
WINDOW_SECONDS = 3600


class RequestBudget(Protocol):
    async def acquire(self) -> None: ...

    async def aclose(self) -> None: ...


def _exhausted(wait: float, which: str = "hourly") -> FivetranBudgetExhausted:
    return FivetranBudgetExhausted(
        429,
        "BudgetExhausted",
        f"The {which} Fivetran request budget of this deployment is used up.",
        None,
        retry_after=wait,
    )


class LocalTokenBucket:
    """In-process token bucket."""

    def __init__(
        self,
        per_hour: int,
        *,
        max_wait: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.capacity = float(per_hour)
        self.rate = per_hour / WINDOW_SECONDS
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    @property
    def available(self) -> float:
        self._refill()
        return self._tokens

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                if wait > self.max_wait:
                    raise _exhausted(wait)
                await self._sleep(wait)
                self._refill()
                self._tokens = max(self._tokens, 1.0)
            self._tokens -= 1

    async def aclose(self) -> None:
        return None


_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {n, ttl}
"""


class RedisWindowBudget:
    """Fixed one-hour window shared through Redis (``<prefix>:<window number>``)."""

    def __init__(
        self,
        redis: Redis,
        per_hour: int,
        *,
        prefix: str = "pbf:fivetran:budget",
        max_wait: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        fallback: LocalTokenBucket | None = None,
    ) -> None:
        self.redis = redis
        self.per_hour = per_hour
        self.prefix = prefix
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._script = redis.register_script(_LUA)
        self._fallback = fallback or LocalTokenBucket(per_hour, max_wait=max_wait, sleep=sleep)

    def _key(self) -> tuple[str, float]:
        now = self._clock()
        window = math.floor(now / WINDOW_SECONDS)
        return f"{self.prefix}:{window}", (window + 1) * WINDOW_SECONDS - now

    async def used(self) -> int:
        key, _ = self._key()
        value = await self.redis.get(key)
        return int(value or 0)

    async def acquire(self) -> None:
        for _ in range(2):
            key, until_next = self._key()
            try:
                count, _ttl = await self._script(keys=[key], args=[WINDOW_SECONDS + 60])
            except Exception as exc:  # Redis down: keep working on the local bucket
                log.warning(
                    "fivetran budget: redis unavailable (%s); using local bucket",
                    type(exc).__name__,
                )
                await self._fallback.acquire()
                return
            if int(count) <= self.per_hour:
                return
            wait = max(until_next, 0.0) + 0.01
            if wait > self.max_wait:
                raise _exhausted(wait)
            await self._sleep(wait)
        raise _exhausted(float(WINDOW_SECONDS))

    async def aclose(self) -> None:
        close = getattr(self.redis, "aclose", None) or getattr(self.redis, "close", None)
        if close is not None:
            await close()


class RateBucket:
    """In-process per-second token bucket (``rate`` tokens per second, at most ``burst``
    saved up). A caller without a token reserves the next one and sleeps until it is due."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        max_wait: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst if burst else rate))
        self.max_wait = max_wait
        self._sleep = sleep
        self._clock = clock
        self._tokens = self.capacity
        self._updated = clock()

    def reserve(self) -> float:
        """Take a token now or reserve the next free one; returns the seconds to wait (0 when
        a token was free). Raises :class:`FivetranBudgetExhausted` (nothing reserved) when
        the wait would exceed ``max_wait``."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        wait = -self._tokens / self.rate
        if wait > self.max_wait:
            self._tokens += 1
            raise _exhausted(wait, "per-second")
        return wait

    async def acquire(self) -> None:
        wait = self.reserve()  # no await between reading and spending: no lock needed
        if wait > 0:
            await self._sleep(wait)

    async def aclose(self) -> None:
        return None


_RATE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then tokens = cap; ts = now end
if now > ts then tokens = math.min(cap, tokens + (now - ts) * rate) else now = ts end
tokens = tokens - 1
local wait = 0
if tokens < 0 then
  wait = -tokens / rate
  if wait > max_wait then
    return {'refused', tostring(wait)}
  end
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap / rate + wait) * 1000) + 1000)
return {'ok', tostring(wait)}
"""


class RedisRateBucket:
    """The per-second bucket shared by every replica through Redis (``<prefix>:rate``).

    State is one hash (``tokens``, ``ts``) updated by one Lua call on Redis's clock; a caller
    that reserves a future token sleeps locally until it is due."""

    def __init__(
        self,
        redis: Redis,
        rate: float,
        burst: float | None = None,
        *,
        prefix: str = "pbf:fivetran:budget",
        max_wait: float = 60.0,
        sleep: Sleep = asyncio.sleep,
        fallback: RateBucket | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.redis = redis
        self.rate = float(rate)
        self.capacity = max(1.0, float(burst if burst else rate))
        self.key = f"{prefix}:rate"
        self.max_wait = max_wait
        self._sleep = sleep
        self._script = redis.register_script(_RATE_LUA)
        self._fallback = fallback or RateBucket(rate, burst, max_wait=max_wait, sleep=sleep)

    async def acquire(self) -> None:
        try:
            status, wait = await self._script(
                keys=[self.key], args=[self.rate, self.capacity, self.max_wait]
            )
        except Exception as exc:  # Redis down: keep working on the local bucket
            log.warning(
                "fivetran rate budget: redis unavailable (%s); using local bucket",
                type(exc).__name__,
            )
            await self._fallback.acquire()
            return
        seconds = float(wait)
        if status in (b"refused", "refused"):
            raise _exhausted(seconds, "per-second")
        if seconds > 0:
            await self._sleep(seconds)

    async def aclose(self) -> None:
        return None  # the hourly budget owns (and closes) the shared Redis client


class CombinedBudget:
    """The hourly budget, then the per-second one, before every request."""

    def __init__(self, hourly: RequestBudget, per_second: RequestBudget) -> None:
        self.hourly = hourly
        self.per_second = per_second

    async def acquire(self) -> None:
        await self.hourly.acquire()
        await self.per_second.acquire()

    async def aclose(self) -> None:
        await self.per_second.aclose()
        await self.hourly.aclose()
