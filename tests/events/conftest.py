"""Fixtures of the events tests: a receiver app reachable through the outbound transport,
and the real app configured with endpoints pointing at it (background worker off)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.config import Settings
from app.db import utcnow
from app.events.signing import verify_signature

RECEIVER_URL = "http://receiver.test/hooks/pbf"
RECEIVER_SECRET = "whsec_receiver_current"


@dataclass
class Received:
    event_id: str
    attempt: int
    type: str
    connection_id: str | None
    body: dict[str, Any]
    signature_ok: bool


@dataclass
class Receiver:
    """A company's event receiver: verifies signatures, dedupes by event id, can be down."""

    secrets: list[str] = field(default_factory=lambda: [RECEIVER_SECRET])
    down_status: int | None = None
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    rejected: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def accepted(self) -> list[Received]:
        return [r for r in self.received if r.signature_ok]

    def unique_ids(self) -> list[str]:
        seen: list[str] = []
        for r in self.accepted():
            if r.event_id not in seen:
                seen.append(r.event_id)
        return seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        body = await request.body()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.down_status is not None:
                response: Response = JSONResponse({"down": True}, status_code=self.down_status)
            else:
                ok = verify_signature(request.headers.get("PBF-Signature"), body, self.secrets)
                doc = json.loads(body)
                self.received.append(
                    Received(
                        event_id=request.headers.get("PBF-Event-Id", ""),
                        attempt=int(request.headers.get("PBF-Delivery-Attempt", "0")),
                        type=doc.get("type"),
                        connection_id=(doc.get("data") or {}).get("connection_id"),
                        body=doc,
                        signature_ok=ok,
                    )
                )
                if not ok:
                    self.rejected += 1
                response = JSONResponse({"ok": ok}, status_code=200 if ok else 401)
        finally:
            self.in_flight -= 1
        await response(scope, receive, send)


class Clock:
    """A controllable ``now`` for the worker (backoff and lease expiry without sleeping)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def endpoint_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"id": "main", "url": RECEIVER_URL, "secrets": [RECEIVER_SECRET]}
    cfg.update(overrides)
    return cfg


@pytest.fixture
def events_settings(settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """Sandbox settings with one endpoint at the receiver and no background worker."""

    def make(endpoints: list[dict[str, Any]] | None = None, **events: Any) -> Settings:
        cfg: dict[str, Any] = {
            "endpoints": [endpoint_config()] if endpoints is None else endpoints,
            "run_worker_in_api": False,
            "backoff_base_seconds": 1.0,
            "backoff_max_seconds": 60.0,
            "max_attempts": 5,
            "lease_seconds": 30.0,
        }
        cfg.update(events)
        return settings_factory(events=cfg)

    return make


@pytest.fixture
async def events_app(
    events_settings: Callable[..., Settings], receiver: Receiver
) -> AsyncIterator[FastAPI]:
    from app.main import create_app

    application = create_app(events_settings(), outbound_transport=httpx.ASGITransport(receiver))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def app(events_app: FastAPI) -> FastAPI:
    """Overrides the root ``app`` (used by ``make_api_key``/``auth_headers``): a second app on
    the same database with its own background worker and no endpoints would fan events out
    to nobody before our worker sees them."""
    return events_app


@pytest.fixture
async def events_client(events_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=events_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture
def worker_for(clock: Clock) -> Callable[..., Any]:
    """A worker on ``app``'s database and http client with the test clock."""
    from app.connections.reconcile import reconciler
    from app.events.worker import EventsWorker

    def make(app: FastAPI, worker_id: str = "w1", **kw: Any) -> EventsWorker:
        settings = kw.pop("settings", app.state.settings)
        sessionmaker = kw.pop("sessionmaker", app.state.sessionmaker)
        return EventsWorker(
            settings=settings,
            sessionmaker=sessionmaker,
            http=app.state.http,
            reconciler=reconciler(app.state, settings=settings, sessionmaker=sessionmaker),
            worker_id=worker_id,
            now=clock,
            **kw,
        )

    return make


async def emit_events(app: FastAPI, items: list[tuple[str, str | None]], **kw: Any) -> list[str]:
    """Emit ``(kind, connection_id)`` events in one committed transaction; returns ids."""
    from app.events.outbox import emit

    ids = []
    async with app.state.sessionmaker() as session, session.begin():
        for kind, connection_id in items:
            event = await emit(
                session,
                kind=kind,
                data={"state": kind.split(".")[-1]},
                connection_id=connection_id,
                end_user_external_id=kw.get("end_user", "acme"),
            )
            ids.append(event.id)
    return ids
