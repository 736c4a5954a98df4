"""Fixtures: the Fivetran simulator over ASGI, a client on it with recorded (fake) sleeps."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.fivetran.budget import LocalTokenBucket
from app.fivetran.client import FivetranClient
from app.observability import InstrumentedTransport, Metrics
from app.sandbox.fivetran import Simulator, create_simulator

SIM_BASE = "http://fivetran.sim"
HOOK_BASE = "http://127.0.0.1:9999"


def _shared_fivetran_dir() -> Path:
    """The design folder beside the checkout (``<repo>/../shared``), as laid out for CI."""
    override = os.environ.get("PBF_TEST_SHARED_DIR")
    if override:
        return Path(override) / "fivetran"
    return Path(__file__).resolve().parents[3] / "shared" / "fivetran"


SHARED = _shared_fivetran_dir()
SPEC_PATH = SHARED / "openapi-connections-2026-06-29.json"


@dataclass
class FakeTokens:
    """Token checker standing in for the sandbox OAuth server's introspection."""

    active: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, service: str, token: str) -> bool:
        self.calls.append((service, token))
        return token in self.active


@dataclass
class Receiver:
    """Collects webhook deliveries (raw body + headers)."""

    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.received.append(
            {"url": str(request.url), "headers": dict(request.headers), "body": request.content}
        )
        return httpx.Response(self.status)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.received]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@dataclass
class Env:
    sim: Simulator
    client: FivetranClient
    raw: httpx.AsyncClient  # plain http to the simulator (no auth added)
    tokens: FakeTokens
    receiver: Receiver
    sleeps: Sleeps
    metrics: Metrics

    async def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.raw.request(method, f"{SIM_BASE}/_control{path}", json=body)

    async def fault(self, **fault: Any) -> None:
        r = await self.control("POST", "/faults", fault)
        assert r.status_code == 201, r.text

    def requests(self, method: str | None = None, path: str | None = None) -> list[dict]:
        return [
            r
            for r in self.sim.state.requests
            if (method is None or r["method"] == method) and (path is None or r["path"] == path)
        ]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def env(sleeps: Sleeps) -> AsyncIterator[Env]:
    tokens = FakeTokens()
    receiver = Receiver()
    metrics = Metrics()
    holder: dict[str, httpx.AsyncClient] = {}
    sim_app = create_simulator(get_http=lambda: holder["http"], token_checker=tokens)
    sim_transport = httpx.ASGITransport(app=sim_app)
    hook_transport = httpx.MockTransport(receiver.handler)

    class Router(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if str(request.url).startswith(SIM_BASE):
                return await sim_transport.handle_async_request(request)
            return await hook_transport.handle_async_request(request)

    http = httpx.AsyncClient(transport=InstrumentedTransport(Router(), metrics))
    holder["http"] = http
    client = FivetranClient(
        http,
        base_url=SIM_BASE,
        api_key="sandbox_key",
        api_secret="sandbox_secret",
        max_retries=3,
        max_retry_after=30,
        budget=LocalTokenBucket(10_000, sleep=sleeps),
        page_size=1000,
        sleep=sleeps,
        rng=lambda: 0.5,
    )
    sim: Simulator = sim_app.state.simulator
    try:
        yield Env(sim, client, http, tokens, receiver, sleeps, metrics)
    finally:
        await sim.webhooks.drain()
        await http.aclose()


@pytest.fixture
def spec_doc() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        pytest.skip(f"Fivetran's definition is not available at {SPEC_PATH}")
    return json.loads(SPEC_PATH.read_text())
