"""``pbf-headless serve --workers N``: N uvicorn worker processes, each a complete app."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.live_server import PBF_EXE, free_port, server_env


def _workers(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [
        int(k)
        for k in kids
        if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()  # not the resource tracker
    ]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc")
def test_serve_with_two_workers(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the process-level check")
    port = free_port()
    env = server_env(
        database_url=database_url, data_dir=tmp_path / "var", base=f"http://127.0.0.1:{port}"
    )
    exe = PBF_EXE
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--sandbox", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = 0
        while time.monotonic() < deadline and ready < 5:
            try:
                ok = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
                ready = ready + 1 if ok else 0
            except httpx.TransportError:
                time.sleep(0.3)
        assert ready == 5, (tmp_path / "serve.log").read_text()[-2000:]
        assert len(_workers(proc.pid)) == 2
        r = httpx.get(f"http://127.0.0.1:{port}/v1/me", timeout=5)
        assert r.status_code == 401  # a complete app: authentication, problem details
        assert r.headers["content-type"] == "application/problem+json"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode is not None
