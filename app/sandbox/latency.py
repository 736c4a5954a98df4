"""Simulated network latency of the sandbox counterparties (benchmarks, demos).

The Fivetran simulator and the sandbox authorization server answer in microseconds because
they live in our process; real counterparties take tens of milliseconds. ``POST
/sandbox/<app>/_control/latency`` ``{"seconds": 0.05}`` makes every non-control request of
that app wait that long before it is handled — with ``asyncio.sleep``, so the event loop
keeps serving everything else (``{"seconds": 0}`` turns it off).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

MAX_LATENCY_SECONDS = 10.0


class SimulatedLatency:
    """The knob: seconds every counterparty request waits (0 = none)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def set(self, body: object) -> float:
        """Set from a control-API body ``{"seconds": float}``; ``ValueError`` when invalid."""
        value = body.get("seconds") if isinstance(body, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("Field 'seconds' must be a number")
        if not 0 <= value <= MAX_LATENCY_SECONDS:
            raise ValueError(f"Field 'seconds' must be between 0 and {MAX_LATENCY_SECONDS:g}")
        self.seconds = float(value)
        return self.seconds


class LatencyMiddleware:
    """Pure ASGI: sleeps ``latency.seconds`` before every request outside ``/_control``."""

    def __init__(self, app: ASGIApp, latency: SimulatedLatency) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.latency.seconds > 0:
            path = scope.get("path", "")
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            if not path.startswith("/_control"):
                await asyncio.sleep(self.latency.seconds)
        await self.app(scope, receive, send)


def parse_body(raw: bytes) -> object:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return None
