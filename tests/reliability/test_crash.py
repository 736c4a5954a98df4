"""Crash safety at process level: the Fivetran simulator runs in its own process (a
``pbf-headless serve --sandbox`` that survives), the service is a second process pointed at
it, and the service is SIGKILLed at chosen points, restarted (startup resume) and the
``onboarding resume`` command run. Nothing may be lost, orphaned or duplicated.

Marked ``reliability`` (``make reliability``)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.app import TEST_DB
from tests.reliability import figures
from tests.reliability.processes import Server, base_env, cli, free_port

pytestmark = pytest.mark.reliability

SIM_AUTH = ("sandbox_key", "sandbox_secret")
V2 = {"Accept": "application/json;version=2"}


def _wait(predicate: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not reached")


@pytest.fixture
def counterparty(tmp_path: Path) -> Any:
    """The Fivetran simulator in its own process (own SQLite database)."""
    port = free_port()
    env = base_env(f"sqlite+aiosqlite:///{tmp_path}/cp.db", tmp_path / "cp", port)
    server = Server(env, port, tmp_path / "counterparty.log").start()
    yield server
    server.stop()


def _service(
    database_url: str, tmp_path: Path, counterparty: Server, **extra: str
) -> tuple[Server, dict[str, str], str]:
    port = free_port()
    env = base_env(
        database_url,
        tmp_path / "svc",
        port,
        PBF_FIVETRAN__BASE_URL=f"{counterparty.base}/sandbox/fivetran",
        PBF_FIVETRAN__TIMEOUT_SECONDS="60",
        **extra,
    )
    cli(env, "migrate")
    key = cli(env, "api-keys", "create", "--name", "crash", "--scope", "admin").splitlines()[-1]
    return Server(env, port, tmp_path / "service.log"), env, key


def _remote(counterparty: Server) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{counterparty.base}/sandbox/fivetran/v1/connections",
        params={"limit": 1000},
        auth=SIM_AUTH,
        headers=V2,
    )
    return list(r.json()["data"]["items"])


def test_sigkill_after_fivetran_create_before_our_commit(
    database_url: str, tmp_path: Path, counterparty: Server
) -> None:
    service, env, key = _service(database_url, tmp_path, counterparty)
    service.start()
    headers = {"Authorization": f"Bearer {key}"}
    runs, ok = 3, 0
    try:
        for i in range(runs):
            eu = f"crash-{i}"
            r = httpx.put(f"{service.base}/v1/end-users/{eu}", json={}, headers=headers)
            assert r.status_code == 201, r.text
            # Fivetran processes the create, then answers slowly: we die waiting.
            r = httpx.post(
                f"{counterparty.base}/sandbox/fivetran/_control/faults",
                json={
                    "method": "POST",
                    "path_regex": r"^/v1/connections/?$",
                    "status": None,
                    "after": True,
                    "delay_seconds": 120,
                    "count": 1,
                },
            )
            assert r.status_code == 201, r.text
            before = len(_remote(counterparty))

            def create(eu: str = eu) -> None:
                try:
                    httpx.post(
                        f"{service.base}/v1/connections",
                        json={"end_user": eu, "service": "stripe", "credentials": {"api_key": "k"}},
                        headers=headers,
                        timeout=180,
                    )
                except httpx.TransportError:
                    pass  # the service was killed under us

            thread = threading.Thread(target=create, daemon=True)
            thread.start()
            _wait(lambda before=before: len(_remote(counterparty)) > before)
            service.kill()
            thread.join(timeout=30)
            httpx.delete(f"{counterparty.base}/sandbox/fivetran/_control/faults")
            service.start()  # startup resume
            cli(env, "onboarding", "resume", "--sandbox")
            r = httpx.get(
                f"{service.base}/v1/connections", params={"end_user": eu}, headers=headers
            )
            items = r.json()["items"]
            ok += len(items) == 1 and items[0]["state"] == "connected"
        conns = httpx.get(f"{service.base}/v1/connections", headers=headers).json()["items"]
    finally:
        service.stop()
    remote = _remote(counterparty)
    ours = {c["fivetran_connection_id"] for c in conns}
    per_schema = Counter((x["group_id"], x["schema"]) for x in remote)
    losses = {
        "orphans": len({str(x["id"]) for x in remote} - ours),
        "duplicates": sum(n - 1 for n in per_schema.values() if n > 1),
        "sessions_open": 0,
    }
    figures.add(f"SIGKILL after Fivetran create ({TEST_DB})", runs, ok, **losses)
    assert losses == dict.fromkeys(losses, 0), losses
    assert ok == runs


class _Receiver(BaseHTTPRequestHandler):
    hold = threading.Event()
    held: list[str] = []
    delivered: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event_id = self.headers.get("PBF-Event-Id", "")
        if not _Receiver.held:
            _Receiver.held.append(event_id)
            _Receiver.hold.wait(60)  # the service dies while we hold its delivery
            return
        _Receiver.delivered.append(event_id)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_sigkill_mid_delivery(database_url: str, tmp_path: Path, counterparty: Server) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = {
        "id": "crash",
        "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        "secrets": ["whsec_crash_test_secret_0123456789"],
    }
    service, _env, key = _service(
        database_url,
        tmp_path,
        counterparty,
        PBF_EVENTS__ENDPOINTS=json.dumps([endpoint]),
        PBF_EVENTS__RUN_WORKER_IN_API="true",
        PBF_EVENTS__POLL_INTERVAL_SECONDS="0.2",
        PBF_EVENTS__LEASE_SECONDS="3",
        PBF_EVENTS__DELIVERY_TIMEOUT_SECONDS="2",
        PBF_EVENTS__BACKOFF_BASE_SECONDS="0.5",
        PBF_EVENTS__BACKOFF_MAX_SECONDS="1",
    )
    headers = {"Authorization": f"Bearer {key}"}
    service.start()
    try:
        for i in range(3):
            r = httpx.put(f"{service.base}/v1/end-users/ev-{i}", json={}, headers=headers)
            assert r.status_code == 201
            r = httpx.post(
                f"{service.base}/v1/connections",
                json={"end_user": f"ev-{i}", "service": "stripe", "credentials": {"api_key": "k"}},
                headers=headers,
                timeout=60,
            )
            assert r.status_code == 201, r.text
        _wait(lambda: _Receiver.held)
        service.kill()
        _Receiver.hold.set()
        service.start()

        def settled() -> list[dict[str, Any]] | None:
            page = httpx.get(f"{service.base}/v1/events", params={"limit": 100}, headers=headers)
            items = page.json()["items"]
            return items if items and len(set(_Receiver.delivered)) >= len(items) else None

        events = _wait(settled, timeout=120)
    finally:
        service.stop()
        receiver.shutdown()
    ids = {e["id"] for e in events}
    counts = Counter(_Receiver.delivered)
    losses = {
        "events_undelivered": len(ids - set(counts)),
        "events_twice": sum(n - 1 for n in counts.values() if n > 1),
    }
    figures.add(f"SIGKILL mid-delivery ({TEST_DB})", len(ids), len(ids & set(counts)), **losses)
    assert losses == dict.fromkeys(losses, 0), (losses, counts)
