"""Real-browser harness: a real ``pbf-headless serve --sandbox`` on a loopback port, a tiny
"company app" that plays ``return_to``, and Debian's Chromium driven by Playwright.

Nothing here injects a header a browser would send: tests click the real buttons, and the
browser decides ``Origin``, ``Sec-Fetch-*``, cookies and referrers itself. Screenshots go to
``tests/browser/artifacts/`` (ignored by git).

When Chromium (``/usr/bin/chromium``, Debian package ``chromium``) or Playwright is missing,
every test here is skipped with one line saying so; ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("PBF_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"browser tests skipped: no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "browser tests skipped: Playwright for Python is not installed"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    here = Path(__file__).resolve().parent
    marker = pytest.mark.skip(reason=reason)
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(here):
            item.add_marker(marker)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _ReturnTo(BaseHTTPRequestHandler):
    """The company's page the browser comes back to: shows the query it received."""

    def do_GET(self) -> None:
        body = f"<!doctype html><title>back</title><pre id=q>{self.path}</pre>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@dataclass
class LiveServer:
    """A running sandbox service plus an admin key and a ``return_to`` target."""

    base: str
    key: str
    return_to: str
    log_path: Path
    database_path: Path
    api: httpx.Client = field(repr=False)

    def end_user(self, external_id: str, name: str = "Acme Corp") -> dict[str, Any]:
        r = self.api.put(f"/v1/end-users/{external_id}", json={"name": name})
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def connect_session(self, end_user: str, service: str, **extra: Any) -> dict[str, Any]:
        body = {"end_user": end_user, "service": service, "return_to": self.return_to, **extra}
        r = self.api.post("/v1/connect-sessions", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def server_log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def _start(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "pbf-headless"
    log = log_path.open("ab")
    return subprocess.Popen(
        [str(exe), "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    """Extra environment of the module's server (a module overrides this fixture, e.g. to
    set branding)."""
    return {}


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, live_env: dict[str, str]
) -> Iterator[LiveServer]:
    """One real server per test module (SQLite; the browser path is database-agnostic, and
    the database paths are covered over ASGI on both backends)."""
    if _missing():
        pytest.skip(_missing() or "")
    tmp = tmp_path_factory.mktemp("live")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    back = ThreadingHTTPServer(("127.0.0.1", 0), _ReturnTo)
    threading.Thread(target=back.serve_forever, daemon=True).start()
    return_to = f"http://127.0.0.1:{back.server_address[1]}/connected"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PBF_", "DATABASE_URL"))}
    env.update(
        PBF_MODE="sandbox",
        PBF_DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'pbf.db'}",
        PBF_DATA_DIR=str(tmp / "var"),
        PBF_PUBLIC_BASE_URL=base,
        PBF_LOG_JSON="true",
        PBF_API__ALLOWED_ORIGINS=json.dumps([base]),
    )
    env.update(live_env)
    exe = Path(sys.executable).parent / "pbf-headless"
    subprocess.run([str(exe), "migrate"], env=env, check=True, capture_output=True, timeout=120)
    made = subprocess.run(
        [str(exe), "api-keys", "create", "--name", "browser", "--scope", "admin"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    log_path = tmp / "server.log"
    proc = _start(env, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
            yield LiveServer(
                base=base,
                key=key,
                return_to=return_to,
                log_path=log_path,
                database_path=tmp / "pbf.db",
                api=api,
            )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        back.shutdown()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright (never a downloaded browser build)."""
    if _missing():
        pytest.skip(_missing() or "")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (own cookies) and page; a screenshot is saved after the test."""
    context = chromium.new_context()
    pg = context.new_page()
    try:
        yield pg
    finally:
        shot(pg, request.node.name + "-final")
        context.close()


@pytest.fixture
def phone(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A 390×844 touch viewport (a phone), in its own context."""
    context = chromium.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    pg = context.new_page()
    try:
        yield pg
    finally:
        shot(pg, request.node.name + "-final")
        context.close()


def shot(pg: Any, name: str) -> None:
    """Save a full-page screenshot as a test artifact (best effort)."""
    ARTIFACTS.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{safe}.png"), full_page=True)
    except Exception:  # a closed page has nothing to show
        return
