"""R16 at process level: a real ``pbf-headless serve`` (uvicorn, DEBUG; our pbf.access line is
the one access log, uvicorn's is off) on a free loopback port; a genuine flow's callback
carries ``code=``/``state=`` in its query, and neither value — nor the binding cookie —
appears anywhere in the server's output."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from tests.fixtures.cli import pbf_env, run_cli
from tests.fixtures.live_server import PBF_EXE, free_port, server_env

APP_ORIGIN = "https://app.example.com"


def _query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_r16_uvicorn_access_log_never_shows_code_or_state(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the process-level check runs once, on SQLite")
    exe = PBF_EXE
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(
        database_url=database_url,
        data_dir=tmp_path / "var",
        base=base,
        PBF_MODE="sandbox",
        PBF_LOG_LEVEL="DEBUG",
        PBF_LOG_JSON="true",  # the production default; sandbox mode would log plain lines
        PBF_API__ALLOWED_ORIGINS=json.dumps([APP_ORIGIN]),
    )
    # The admin key in-process (same command); the server under test is a real process.
    made = run_cli(["api-keys", "create", "--name", "r16", "--scope", "admin"], env=pbf_env(env))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    # Output goes to a file: an unread pipe would fill up at DEBUG and block the server.
    log_path = tmp_path / "server.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [str(exe), "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    secrets_seen: list[str] = []
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not start")
        with httpx.Client(base_url=base, timeout=20) as client:
            r = client.put("/v1/end-users/acme", json={"name": "Acme"}, headers=headers)
            assert r.status_code in (200, 201), r.text
            r = client.post(
                "/v1/connect-sessions",
                json={"end_user": "acme", "service": "hubspot", "return_to": f"{APP_ORIGIN}/x"},
                headers=headers,
            )
            assert r.status_code == 201, r.text
            start = client.post(r.json()["connect_url"], headers={"Origin": APP_ORIGIN})
            assert start.status_code == 303, start.text
            binding = start.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]
            authorize = start.headers["location"] + "&login_hint=auto"
            consent = client.get(authorize)
            assert consent.status_code in (302, 303), consent.text
            callback = consent.headers["location"]
            params = _query(callback)
            secrets_seen += [params["code"], params["state"], binding]
            done = client.get(callback, headers={"Cookie": f"__Host-oauth_flow={binding}"})
            assert done.status_code == 303
            assert _query(done.headers["location"])["status"] == "connected"
            # A replay and a forged callback, both with code/state in the query.
            client.get(callback)
            forged = {"code": "forged-code-7f3a9", "state": "forged-state-2b8c4"}
            client.get(f"/oauth/callback/hubspot?code={forged['code']}&state={forged['state']}")
            secrets_seen += list(forged.values())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log_file.close()
    text = log_path.read_text(errors="replace")
    assert "/oauth/callback/hubspot" in text  # the access log is on and has the line...
    # ...exactly once per request: ours (pbf.access); uvicorn's own access log is off.
    assert "uvicorn.access" not in text
    lines = [line for line in text.splitlines() if "GET /oauth/callback/hubspot" in line]
    assert len(lines) == 3 and all('"logger": "pbf.access"' in line for line in lines), lines
    for value in secrets_seen:
        assert value not in text  # ...without the values
