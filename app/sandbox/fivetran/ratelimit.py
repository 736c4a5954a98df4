"""Simulated Fivetran rate limit — a **simulation** for sandbox mode, tests and benchmarks.

Real Fivetran answers ``429 TooManyRequests`` with ``Retry-After: <seconds>`` once an account
is over its limit (see the research notes on the Fivetran API). The simulator does the same
when a limit is set, so the client's budget (:mod:`app.fivetran.budget`) and fleet operations
(:mod:`app.connections.fleet`) can be checked against it:

* ``POST /sandbox/fivetran/_control/rate-limit`` ``{"per_second": 200, "burst": 200}`` — a
  token bucket of ``per_second`` requests per second holding at most ``burst`` (default: one
  second's worth); ``{"per_second": 0}`` turns it off (the default);
* ``GET /sandbox/fivetran/_control/rate-limit`` — the setting and the counts of requests let
  through and refused since it was set.

Every authenticated API request (not ``/_control``) takes one token; without one the answer
is ``429`` ``{"code": "TooManyRequests", …}`` with ``Retry-After`` in whole seconds (at least
1), as Fivetran sends it. Refused requests appear in the simulator's request log.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

MAX_PER_SECOND = 100_000.0


class SimulatedRateLimit:
    """The knob and the bucket (monotonic clock; injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.per_second = 0.0
        self.burst = 0.0
        self._tokens = 0.0
        self._updated = clock()
        self.allowed = 0
        self.refused = 0

    def configure(self, per_second: float, burst: float | None = None) -> None:
        if per_second < 0 or per_second > MAX_PER_SECOND:
            raise ValueError(f"Field 'per_second' must be between 0 and {MAX_PER_SECOND:g}")
        if burst is not None and burst < 1:
            raise ValueError("Field 'burst' must be at least 1")
        self.per_second = float(per_second)
        self.burst = float(burst) if burst is not None else max(1.0, self.per_second)
        self._tokens = self.burst
        self._updated = self._clock()
        self.allowed = 0
        self.refused = 0

    def set(self, body: object) -> dict[str, Any]:
        """Configure from a control-API body; ``ValueError`` names the bad field."""
        if not isinstance(body, dict):
            raise ValueError("Request body must be a JSON object")
        per_second = body.get("per_second")
        burst = body.get("burst")
        if isinstance(per_second, bool) or not isinstance(per_second, int | float):
            raise ValueError("Field 'per_second' must be a number")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int | float)):
            raise ValueError("Field 'burst' must be a number")
        self.configure(per_second, burst)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "per_second": self.per_second,
            "burst": self.burst if self.per_second else 0,
            "allowed": self.allowed,
            "refused": self.refused,
        }

    def take(self) -> float | None:
        """Take a token: None when allowed, else the seconds until one is free."""
        if self.per_second <= 0:
            return None
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.per_second)
        self._updated = now
        if self._tokens >= 1 - 1e-9:  # float refills: a token due now is there now
            self._tokens = max(0.0, self._tokens - 1)
            self.allowed += 1
            return None
        self.refused += 1
        return (1 - self._tokens) / self.per_second


class RateLimitMiddleware:
    """Pure ASGI: answers 429 + Retry-After when the bucket is empty (not for ``/_control``)."""

    def __init__(self, app: ASGIApp, limit: SimulatedRateLimit) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.limit.per_second > 0:
            path = scope.get("path", "")
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if not path.startswith("/_control"):
                wait = self.limit.take()
                if wait is not None:
                    retry_after = max(1, math.ceil(wait))
                    response = JSONResponse(
                        {
                            "code": "TooManyRequests",
                            "message": "Too many requests: the account's request rate limit "
                            f"of {self.limit.per_second:g}/s is exceeded (simulated)",
                        },
                        status_code=429,
                        headers={"Retry-After": str(retry_after)},
                    )
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def install_rate_limit(app: FastAPI) -> SimulatedRateLimit:
    """Add the middleware and the control route to the simulator app; the knob is
    ``app.state.rate_limit`` (off until configured)."""
    limit = SimulatedRateLimit()
    app.state.rate_limit = limit
    app.add_middleware(RateLimitMiddleware, limit=limit)  # type: ignore[arg-type]

    app.add_api_route("/_control/rate-limit", set_limit, methods=["POST"], include_in_schema=False)
    app.add_api_route("/_control/rate-limit", get_limit, methods=["GET"], include_in_schema=False)
    return limit


async def set_limit(request: Request) -> Response:
    """``POST /_control/rate-limit {per_second, burst?}`` (module-level: see
    :func:`app.api_docs.install_api_docs` on endpoints closing over their app)."""
    limit: SimulatedRateLimit = request.app.state.rate_limit
    try:
        data = limit.set(json.loads(await request.body() or b"{}"))
    except ValueError as exc:
        return JSONResponse({"code": "InvalidInput", "message": str(exc)}, status_code=400)
    return JSONResponse({"code": "Success", "message": "Rate limit set", "data": data})


async def get_limit(request: Request) -> Response:
    """``GET /_control/rate-limit``."""
    limit: SimulatedRateLimit = request.app.state.rate_limit
    return JSONResponse({"code": "Success", "data": limit.describe()})
