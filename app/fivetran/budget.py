"""Client-side request budget: keeps the account under Fivetran's hourly request limit.

Two implementations of one small interface (``await budget.acquire()`` before each request):

* :class:`LocalTokenBucket` — in-process token bucket (capacity = the hourly budget, refilled
  continuously at budget/3600 tokens per second);
* :class:`RedisWindowBudget` — shared by every replica: a fixed one-hour window counted in
  Redis with one atomic Lua call (INCR + EXPIRE). If Redis is unreachable it falls back to the
  local bucket (logged) rather than stopping all Fivetran traffic.

When the budget is used up, ``acquire`` waits for the next token if that wait is at most
``max_wait`` seconds, else raises :class:`FivetranBudgetExhausted` (nothing was sent).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app.fivetran.errors import FivetranBudgetExhausted

log = logging.getLogger("pbf.fivetran.budget")

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
WINDOW_SECONDS = 3600


class RequestBudget(Protocol):
    async def acquire(self) -> None: ...

    async def aclose(self) -> None: ...


def _exhausted(wait: float) -> FivetranBudgetExhausted:
    return FivetranBudgetExhausted(
        429,
        "BudgetExhausted",
        "The hourly Fivetran request budget of this deployment is used up.",
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
        redis: Any,
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
