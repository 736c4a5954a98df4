"""CLI: ``pbf-headless worker --once`` delivers to a real receiver on a loopback port, and
``pbf-headless fivetran webhooks ensure`` registers at a running sandbox server (idempotent)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from app.events.models import EventDelivery
from app.events.registration import WEBHOOK_PATH
from tests.fixtures.cli import run_cli
from tests.fixtures.events import RECEIVER_SECRET, Receiver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Served:
    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # A request still running at exit (the slow receiver) is cancelled after 0.5 s
        # instead of holding the test for its whole delay.
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=0.5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path) -> Iterator[Any]:
    monkeypatch.setenv("PBF_MODE", "sandbox")
    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PBF_LOG_JSON", "true")
    yield monkeypatch


async def _emit(database_url: str, n: int) -> list[str]:
    from app.db import create_engine, create_sessionmaker
    from app.events.outbox import emit

    engine = create_engine(database_url)
    ids = []
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            for i in range(n):
                event = await emit(
                    session, kind="connection.created", data={}, connection_id=f"con_{i % 2}"
                )
                ids.append(event.id)
    finally:
        await engine.dispose()
    return ids


def test_worker_once_delivers_over_the_network(env, database_url) -> None:
    receiver = Receiver()
    with _Served(receiver) as served:
        env.setenv(
            "PBF_EVENTS__ENDPOINTS",
            json.dumps([{"id": "main", "url": f"{served.url}/hook", "secrets": [RECEIVER_SECRET]}]),
        )
        ids = asyncio.run(_emit(database_url, 3))
        result = run_cli(["worker", "--once"])
    assert result.returncode == 0, result.stderr
    assert "delivered 3 event(s)" in result.stdout
    assert sorted(receiver.unique_ids()) == sorted(ids)
    assert all(r.signature_ok for r in receiver.received)


def test_webhooks_ensure_registers_at_the_running_sandbox(env, settings_factory) -> None:
    from app.main import create_app

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings_factory(public_base_url=base, events={"run_worker_in_api": False}))
    env.setenv("PBF_PUBLIC_BASE_URL", base)
    with _Served(app, port):
        first = run_cli(["fivetran", "webhooks", "ensure"])
        second = run_cli(["fivetran", "webhooks", "ensure"])
        auth = "Basic " + base64.b64encode(b"sandbox_key:sandbox_secret").decode()
        with httpx.Client(
            base_url=f"{base}/sandbox/fivetran", headers={"Authorization": auth}
        ) as h:
            hooks = h.get("/v1/webhooks").json()["data"]["items"]
            tested = h.post(f"/v1/webhooks/{hooks[0]['id']}/test", json={"event": "sync_end"})
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("created account webhook")
    assert second.stdout.startswith("updated account webhook")
    assert [h["url"] for h in hooks] == [base + WEBHOOK_PATH]
    # The simulator now signs with the secret we registered, and our endpoint accepts it.
    assert tested.json()["data"] == {"succeed": True, "status": 200, "message": "Success"}


async def test_slow_receiver_times_out_and_is_retried(events_settings) -> None:
    """Over a real socket (the shared client's own transport): the delivery timeout holds."""
    from app.events.worker import EventsWorker
    from app.main import create_app

    receiver = Receiver(delay=3.0)
    with _Served(receiver) as served:
        settings = events_settings(
            endpoints=[{"id": "main", "url": f"{served.url}/hook", "secrets": [RECEIVER_SECRET]}],
            delivery_timeout_seconds=0.3,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            from tests.fixtures.events import emit_events

            await emit_events(app, [("connection.broken", "con_A")])
            worker = EventsWorker(
                settings=settings,
                sessionmaker=app.state.sessionmaker,
                http=app.state.http,
            )
            started = time.monotonic()
            stats = await worker.run_deliveries_once()
            elapsed = time.monotonic() - started
            async with app.state.sessionmaker() as session:
                error = await session.scalar(select(EventDelivery.last_error))
    assert stats.retrying == 1 and error == "timeout"
    assert elapsed < 2.5  # the receiver would have taken 3 s
