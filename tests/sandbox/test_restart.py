"""The sandbox survives a restart of ``pbf-headless serve --sandbox`` (a real subprocess):
end-users keep their groups, OAuth refresh tokens still refresh, a second server on the same
data dir refuses to start, and the worker reaches the server's simulator over HTTP.

``serve`` is the real console script (a restart is a new process); ``migrate``, ``api-keys``,
``worker --once`` and ``onboarding resume`` run in the test's process
(:func:`tests.fixtures.cli.run_cli`), which is as separate from the server as their own
process would be: it reaches the server over HTTP and shares only the database file."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.cli import CliResult, pbf_env, run_cli
from tests.fixtures.live_server import PBF_EXE, free_port, server_env
from tests.fixtures.onboarding import RETURN_TO, browse_connect

PBF = PBF_EXE


@dataclass
class Sandbox:
    """``make run`` in miniature: one data dir, one database, servers started and stopped."""

    env: dict[str, str]
    base: str
    port: int
    data_dir: Path
    log_path: Path

    def start(self, port: int | None = None) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        return subprocess.Popen(
            [
                str(PBF),
                "serve",
                "--sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(port or self.port),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        for _ in range(300):  # bounded wait for the server to come up
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"server did not start:\n{self.log()[-4000:]}")

    @staticmethod
    def stop(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)  # graceful: the lifespan saves and unlocks
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail("server did not stop on SIGTERM")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def cli(self, *args: str, **env: str) -> CliResult:
        """``pbf-headless *args`` in-process, with the server's configuration plus ``env``."""
        return run_cli(list(args), env={**pbf_env(self.env), **env})

    def worker_reconciling_everything(self) -> int:
        """``pbf-headless worker --once`` with every connection stale; returns how many it
        reconciled."""
        done = self.cli("worker", "--once", PBF_EVENTS__RECONCILE_STALE_AFTER_SECONDS="0.001")
        assert done.returncode == 0, done.stderr + done.stdout
        found = re.search(r"reconciled (\d+) connection", done.stdout)
        assert found, done.stdout
        return int(found.group(1))


@pytest.fixture
def sandbox(database_url: str, tmp_path: Path) -> Iterator[Sandbox]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        database_url=database_url,
        data_dir=tmp_path / "var",
        base=base,
        PBF_MODE="sandbox",
        PBF_LOG_JSON="true",
        PBF_OAUTH__SANDBOX_AUTO_APPROVE="true",
        # Simulated syncs end soon, so the test can wait for them before reconciling.
        PBF_SANDBOX__SYNC_SECONDS="0.5",
    )
    yield Sandbox(env, base, port, tmp_path / "var", tmp_path / "server.log")


def _admin_key(sandbox: Sandbox) -> str:
    made = sandbox.cli("api-keys", "create", "--name", "restart", "--scope", "admin")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def _api(base: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def _first_run(base: str, key: str) -> dict[str, Any]:
    async with _api(base, key) as api:
        r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
        assert r.status_code == 201, r.text
        group_id = r.json()["fivetran_group_id"]
        body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_1"}}
        r = await api.post("/v1/connections", json=body)
        assert r.status_code == 201 and r.json()["state"] == "connected", r.text
        r = await api.post(
            "/v1/connect-sessions",
            json={"end_user": "acme", "service": "salesforce", "return_to": RETURN_TO},
        )
        assert r.status_code == 201, r.text
        result = await browse_connect(api, r.json()["connect_url"])
        assert result["status"] == "connected", result
        conn = (await api.get(f"/v1/connections/{result['connection_id']}")).json()
        return {"group_id": group_id, "oauth": conn}


async def _second_run(base: str, key: str) -> dict[str, Any]:
    async with _api(base, key) as api:
        r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
        assert r.status_code == 200, r.text
        body = {
            "end_user": "acme",
            "service": "postgres",
            "config": {"host": "db.example.com", "port": 5432, "user": "u", "database": "d"},
            "credentials": {"password": "pw"},
        }
        second = await api.post("/v1/connections", json=body)
        return {"end_user": r.json(), "second": second}


async def _states(base: str, key: str) -> list[str]:
    async with _api(base, key) as api:
        r = await api.get("/v1/connections", params={"end_user": "acme"})
        assert r.status_code == 200, r.text
        return [c["state"] for c in r.json()["items"]]


async def _syncs_ended(base: str, key: str) -> None:
    """Wait (bounded) until no connection is syncing: a sync_end webhook landing during a
    reconcile pass makes its connection fresh, and a fresh connection is rightly skipped."""
    async with _api(base, key) as api:
        for _ in range(150):
            r = await api.get("/v1/connections", params={"end_user": "acme"})
            assert r.status_code == 200, r.text
            if all(c["sync_state"] != "syncing" for c in r.json()["items"]):
                return
            await asyncio.sleep(0.2)
    pytest.fail("the simulated syncs did not end")


async def _connection_test(base: str, key: str, connection_id: str) -> httpx.Response:
    async with _api(base, key) as api:
        return await api.post(f"/v1/connections/{connection_id}/test", json={})


async def _refresh_at_sandbox(sandbox: Sandbox, refresh_token: str) -> Any:
    """A real refresh_token grant at the restarted sandbox OAuth server, over HTTP."""
    from app.config import Settings
    from app.providers.client import refresh
    from app.providers.startup import build_registry
    from app.vault.secret import Secret

    settings = Settings(mode="sandbox", public_base_url=sandbox.base, data_dir=sandbox.data_dir)
    registry = build_registry(settings)
    provider = registry.get("salesforce")
    endpoints = provider.endpoints({})
    return await refresh(
        provider,
        refresh_token=Secret(refresh_token),
        token_endpoint=endpoints.token_url,
        credentials=await registry.credentials(None, "salesforce"),
        issuer=endpoints.issuer,
    )


def test_state_survives_a_restart_and_has_one_owner(sandbox: Sandbox) -> None:
    assert sandbox.cli("migrate").returncode == 0
    key = _admin_key(sandbox)
    proc = sandbox.start()
    try:
        sandbox.wait_ready(proc)
        first = asyncio.run(_first_run(sandbox.base, key))

        # A second server on the same data dir refuses instead of growing a second simulator.
        other = sandbox.start(port=free_port())
        assert other.wait(timeout=60) != 0
        assert "another sandbox server is using" in sandbox.log()

        # The worker reaches this server's simulator over HTTP: reconciling finds the
        # connections (an empty simulator of its own would take them for deleted).
        asyncio.run(_syncs_ended(sandbox.base, key))
        assert sandbox.worker_reconciling_everything() == 2
        states = asyncio.run(_states(sandbox.base, key))
        assert states == ["connected", "connected"]
    finally:
        sandbox.stop(proc)

    state_file = sandbox.data_dir / "sandbox-state.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    saved = json.loads(state_file.read_text())
    assert first["group_id"] in saved["fivetran"]["groups"]
    fid = first["oauth"]["fivetran_connection_id"]
    refresh_token = saved["fivetran"]["auth"][fid]["refresh_token"]

    proc = sandbox.start()
    try:
        sandbox.wait_ready(proc)
        second = asyncio.run(_second_run(sandbox.base, key))
        assert second["end_user"]["fivetran_group_id"] == first["group_id"]
        r = second["second"]
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "connected"
        assert r.json()["group_id"] == first["group_id"]
        # Fivetran's copy of the OAuth grant still validates at the restarted OAuth server…
        r = asyncio.run(_connection_test(sandbox.base, key, first["oauth"]["id"]))
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "connected"
        assert [t["status"] for t in r.json()["setup_tests"]] == ["PASSED"]
        # …and the refresh token still refreshes.
        result = asyncio.run(_refresh_at_sandbox(sandbox, refresh_token))
        assert result.access_token.reveal()
        # The worker sees the same connections, none taken for deleted.
        asyncio.run(_syncs_ended(sandbox.base, key))
        assert sandbox.worker_reconciling_everything() == 3
        assert asyncio.run(_states(sandbox.base, key)) == ["connected"] * 3
    finally:
        sandbox.stop(proc)
    assert "sandbox state" in sandbox.log()


def test_worker_without_a_running_sandbox_server_says_so(sandbox: Sandbox) -> None:
    assert sandbox.cli("migrate").returncode == 0
    worker = sandbox.cli("worker", "--once")
    assert worker.returncode == 0, worker.stderr
    assert "no sandbox server answers" in worker.stdout
    resume = sandbox.cli("onboarding", "resume", "--sandbox")
    assert resume.returncode == 0, resume.stderr
    assert "no sandbox server answers" in resume.stderr
