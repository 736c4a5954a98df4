"""Crash safety at process level: the counterparties — the Fivetran simulator and the
sandbox OAuth authorization server — run in their own ``pbf-headless sandbox-counterparties``
process (which survives), the service is a real ``pbf-headless serve --sandbox`` process
pointed at it (``PBF_SANDBOX__COUNTERPARTIES_URL``), and the service is SIGKILLed at chosen
points — after the token commit, after the Fivetran create before our commit, mid-delivery —
restarted (startup resume) and ``onboarding resume`` run. Nothing may be lost, orphaned,
duplicated or left open.

Marked ``reliability`` (``make reliability``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.config import load_settings
from tests.fixtures.app import TEST_DB
from tests.fixtures.onboarding import APP_ORIGIN, RETURN_TO
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
def service_port() -> int:
    return free_port()


@pytest.fixture
def counterparty(tmp_path: Path, service_port: int) -> Any:
    """The simulator and the sandbox OAuth server in their own process (its own state)."""
    port = free_port()
    env = base_env(
        "sqlite+aiosqlite:///unused.db",  # the counterparties have no database
        tmp_path / "cp",
        service_port,  # PBF_PUBLIC_BASE_URL: the service (redirect URIs)
        PBF_SANDBOX__COUNTERPARTIES_URL=f"http://127.0.0.1:{port}",
        PBF_SANDBOX__SYNC_SECONDS="1",
    )
    server = Server(env, port, tmp_path / "counterparty.log", ("sandbox-counterparties",))
    server.start()
    yield server
    server.stop()


def _service(
    database_url: str, tmp_path: Path, counterparty: Server, port: int, **extra: str
) -> tuple[Server, dict[str, str], str]:
    env = base_env(
        database_url,
        tmp_path / "svc",
        port,
        PBF_SANDBOX__COUNTERPARTIES_URL=counterparty.base,
        PBF_FIVETRAN__TIMEOUT_SECONDS="60",
        PBF_API__ALLOWED_ORIGINS=json.dumps([APP_ORIGIN]),
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


def _sql(env: dict[str, str], query: str) -> list[Any]:
    """Rows of ``query`` on the service's database (read by the test, never written)."""

    async def run() -> list[Any]:
        url = load_settings(database_url=env["PBF_DATABASE_URL"]).effective_database_url
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(query))).all())
        finally:
            await engine.dispose()

    return asyncio.run(run())


class _Browser:
    """The end-user's browser over real HTTP: cookies by hand (they are ``Secure`` on a
    loopback http origin, which Chromium accepts and httpx's jar would not send)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}
        self.http = httpx.Client(timeout=180)

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers = {**({"Cookie": cookie} if cookie else {}), **kw.pop("headers", {})}
        response = self.http.request(method, url, headers=headers, **kw)
        for raw in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            self.cookies.update({name: m.value for name, m in jar.items() if m.value})
        return response

    def to_callback(self, connect_url: str) -> str:
        """Start + consent at the sandbox OAuth server (auto-approve): the callback URL."""
        r = self.request("POST", connect_url, headers={"Origin": APP_ORIGIN})
        assert r.status_code == 303, r.text[:300]
        authorize = urlsplit(r.headers["location"])
        query = [(k, v) for k, v in parse_qsl(authorize.query) if k != "login_hint"]
        query.append(("login_hint", "auto"))
        r = self.request("GET", urlunsplit(authorize._replace(query=urlencode(query))))
        assert r.status_code in (302, 303), r.text[:300]
        return str(r.headers["location"])


class _Events(BaseHTTPRequestHandler):
    """The company's event endpoint: records every delivered event id."""

    received: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _Events.received.append(self.headers.get("PBF-Event-Id", ""))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_sigkill_after_the_token_commit(
    database_url: str, tmp_path: Path, counterparty: Server, service_port: int
) -> None:
    """OAuth onboardings: the service dies after it committed the end-user's tokens, while
    its first Fivetran call hangs; restarted, the sweep and ``onboarding resume`` finish the
    connection with those tokens (no second consent, nothing orphaned)."""
    _Events.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Events)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = {
        "id": "crash",
        "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook",
        "secrets": ["whsec_crash_test_secret_0123456789"],
    }
    service, env, key = _service(
        database_url,
        tmp_path,
        counterparty,
        service_port,
        PBF_EVENTS__ENDPOINTS=json.dumps([endpoint]),
        PBF_EVENTS__RUN_WORKER_IN_API="true",
        PBF_EVENTS__POLL_INTERVAL_SECONDS="0.2",
        PBF_CONNECT__EXPIRY_SWEEP_SECONDS="0.5",
        PBF_CONNECT__CALLBACK_GRACE_SECONDS="3",
    )
    headers = {"Authorization": f"Bearer {key}"}
    sim = f"{counterparty.base}/sandbox/fivetran"
    runs, ok = 2, 0
    sessions: list[str] = []
    service.start()
    try:
        for i in range(runs):
            eu = f"tok-{i}"
            r = httpx.put(f"{service.base}/v1/end-users/{eu}", json={}, headers=headers)
            assert r.status_code == 201, r.text
            r = httpx.post(
                f"{service.base}/v1/connect-sessions",
                json={"end_user": eu, "service": "hubspot", "return_to": RETURN_TO},
                headers=headers,
            )
            assert r.status_code == 201, r.text
            sessions.append(r.json()["id"])
            browser = _Browser()
            callback = browser.to_callback(r.json()["connect_url"])
            # Every Fivetran call now hangs before Fivetran processes it: the callback
            # commits the tokens, then waits on Fivetran — and dies there.
            r = httpx.post(
                f"{sim}/_control/faults",
                json={"path_regex": "^/v1/", "status": None, "delay_seconds": 120, "count": 50},
            )
            assert r.status_code == 201, r.text

            def call(url: str = callback, b: _Browser = browser) -> None:
                try:
                    b.request("GET", url)
                except httpx.TransportError:
                    pass  # the service was killed under us

            thread = threading.Thread(target=call, daemon=True)
            thread.start()
            _wait(
                lambda: (
                    _sql(env, "SELECT count(*) FROM oauth_flows WHERE status = 'exchanged'")[0][0]
                    > 0
                )
            )
            service.kill()
            thread.join(timeout=30)
            httpx.delete(f"{sim}/_control/faults")
            service.start()  # startup resume
            # The sweep moves the interrupted connection (tokens stored) to 'creating' ...
            _wait(
                lambda eu=eu: (
                    httpx.get(
                        f"{service.base}/v1/connections", params={"end_user": eu}, headers=headers
                    ).json()["items"][0]["state"]
                    != "authorizing"
                )
            )
            cli(env, "onboarding", "resume", "--sandbox")  # ... the resume finishes it
            r = httpx.get(
                f"{service.base}/v1/connections", params={"end_user": eu}, headers=headers
            )
            items = r.json()["items"]
            ok += len(items) == 1 and items[0]["state"] == "connected"

        def settled() -> bool:
            statuses = [
                httpx.get(f"{service.base}/v1/connect-sessions/{sid}", headers=headers).json()[
                    "status"
                ]
                for sid in sessions
            ]
            return "pending" not in statuses

        _wait(settled, timeout=60)
        conns = httpx.get(f"{service.base}/v1/connections", headers=headers).json()["items"]

        def delivered() -> list[dict[str, Any]] | None:
            page = httpx.get(
                f"{service.base}/v1/events", params={"limit": 200}, headers=headers
            ).json()["items"]
            return page if page and {e["id"] for e in page} <= set(_Events.received) else None

        events = _wait(delivered, timeout=60)
        open_sessions = sum(
            httpx.get(f"{service.base}/v1/connect-sessions/{sid}", headers=headers).json()["status"]
            == "pending"
            for sid in sessions
        )
        flows = _sql(
            env,
            "SELECT f.connection_id, c.state, c.fivetran_connection_id, "
            "c.grant_handed_off_at IS NOT NULL, "
            "EXISTS (SELECT 1 FROM vault_secrets v WHERE v.owner_id = c.id) "
            "FROM oauth_flows f LEFT JOIN connections c ON c.id = f.connection_id "
            "WHERE f.status IN ('exchanged', 'completed')",
        )
    finally:
        service.stop()
        receiver.shutdown()
    remote = _remote(counterparty)
    remote_ids = {str(x["id"]) for x in remote}
    ours = {c["fivetran_connection_id"] for c in conns}
    per_schema = Counter((x["group_id"], x["schema"]) for x in remote)
    tokens_lost = sum(
        1
        for _cid, _state, ft_id, handed_off, vaulted in flows
        if not (vaulted or (handed_off and ft_id in remote_ids))
    )
    counts = Counter(_Events.received)
    losses = {
        "tokens_lost": tokens_lost + (runs - len(flows)),
        "orphans": len(remote_ids - ours),
        "duplicates": sum(n - 1 for n in per_schema.values() if n > 1),
        "sessions_open": open_sessions,
        "events_undelivered": len({e["id"] for e in events} - set(counts)),
        "events_twice": sum(n - 1 for n in counts.values() if n > 1),
    }
    figures.add(f"SIGKILL after the token commit ({TEST_DB})", runs, ok, **losses)
    assert losses == dict.fromkeys(losses, 0), losses
    assert ok == runs


def test_sigkill_after_fivetran_create_before_our_commit(
    database_url: str, tmp_path: Path, counterparty: Server, service_port: int
) -> None:
    service, env, key = _service(database_url, tmp_path, counterparty, service_port)
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
    """Holds every delivery until the service is dead (none is answered before the kill, so
    the kill lands mid-delivery, never between our 204 and the service's commit — a window
    at-least-once delivery cannot close); records what is delivered after the restart."""

    hold = threading.Event()
    held: list[str] = []
    delivered: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        event_id = self.headers.get("PBF-Event-Id", "")
        if not _Receiver.hold.is_set():
            _Receiver.held.append(event_id)
            _Receiver.hold.wait(60)  # the service dies while we hold its delivery
            return
        _Receiver.delivered.append(event_id)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_sigkill_mid_delivery(
    database_url: str, tmp_path: Path, counterparty: Server, service_port: int
) -> None:
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
        service_port,
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
