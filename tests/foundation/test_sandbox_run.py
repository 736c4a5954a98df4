"""What a newcomer's ``make run`` does: one banner with the URLs and a sandbox key that is
reused across restarts (or replaced, revoking the old one — never piled up), plain
one-line-per-request logs, and API docs whose assets are served by the app itself.

``api-keys`` commands run in-process (:func:`tests.fixtures.cli.run_cli`); ``serve`` runs as
the real console script, twice, since its banner, its log lines and the key reused across a
restart are what a real process shows."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.callers.sandbox_keys import SANDBOX_KEY_FILE
from tests.fixtures.cli import CliResult, run_cli

EXE = str(Path(sys.executable).parent / "pbf-headless")


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PBF_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path, **env: str) -> CliResult:
    """``pbf-headless *args`` in ``cwd`` (in-process), the test's clean environment plus
    ``env``."""
    return run_cli(args, cwd=cwd, env=env)


def _active_sandbox_keys(cwd: Path) -> list[dict[str, object]]:
    listed = json.loads(_run(["api-keys", "list", "--json"], cwd).stdout)
    return [k for k in listed if k["name"] == "sandbox" and not k["revoked"]]


@pytest.mark.db_independent
def test_ensure_sandbox_reuses_the_stored_key_and_replaces_a_dead_one(tmp_path: Path) -> None:
    assert _run(["migrate"], tmp_path).returncode == 0
    first = _run(["api-keys", "ensure-sandbox"], tmp_path)
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip().splitlines()[-1]
    assert key.startswith("pbf_") and "created sandbox API key" in first.stdout
    stored = tmp_path / "var" / SANDBOX_KEY_FILE
    assert stored.read_text().strip() == key
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600

    again = _run(["api-keys", "ensure-sandbox"], tmp_path)
    assert again.stdout.strip().splitlines()[-1] == key
    assert "reusing sandbox API key" in again.stdout
    assert len(_active_sandbox_keys(tmp_path)) == 1

    # Revoked: a new key replaces it in the file.
    assert _run(["api-keys", "revoke", key.split("_")[1]], tmp_path).returncode == 0
    replaced = _run(["api-keys", "ensure-sandbox"], tmp_path).stdout.strip().splitlines()[-1]
    assert replaced != key and stored.read_text().strip() == replaced

    # The file is lost: a new key, and the one it replaces is revoked (no pile of keys).
    stored.unlink()
    made = _run(["api-keys", "ensure-sandbox"], tmp_path)
    newest = made.stdout.strip().splitlines()[-1]
    assert "revoked 1 older sandbox key(s)" in made.stdout
    active = _active_sandbox_keys(tmp_path)
    assert [k["id"] for k in active] == [newest.split("_")[1]]

    # A key someone put in the file by hand that is not the sandbox admin key is not reused.
    web = _run(["api-keys", "create", "--name", "web", "--scope", "read"], tmp_path)
    web_key = web.stdout.strip().splitlines()[-1]
    stored.write_text(web_key)
    fixed = _run(["api-keys", "ensure-sandbox"], tmp_path).stdout.strip().splitlines()[-1]
    assert fixed not in (web_key, newest) and stored.read_text().strip() == fixed


@pytest.mark.db_independent
def test_ensure_sandbox_refuses_production_mode(tmp_path: Path) -> None:
    r = _run(["api-keys", "ensure-sandbox"], tmp_path, PBF_MODE="production")
    assert r.returncode == 2
    assert "sandbox mode only" in r.stderr
    assert not (tmp_path / "var" / SANDBOX_KEY_FILE).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_once(tmp_path: Path, port: int, run: int) -> tuple[str, str]:
    """Start ``serve --sandbox`` (no PBF_PUBLIC_BASE_URL, no PBF_LOG_JSON: what make run
    leaves to defaults), make one request, stop; returns (stdout, stderr)."""
    out, err = tmp_path / f"out{run}.log", tmp_path / f"err{run}.log"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [EXE, "serve", "--sandbox", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            stdout=o,
            stderr=e,
        )
        try:
            deadline = time.monotonic() + 60
            while "export PBF_BASE=" not in out.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no banner:\n{out.read_text()}\n{err.read_text()[-3000:]}")
                time.sleep(0.2)
            # The banner is printed once the socket listens: the first request answers.
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
            while "GET /healthz" not in err.read_text():
                if time.monotonic() > deadline:
                    pytest.fail("no access line")
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return out.read_text(), err.read_text()


@pytest.mark.db_independent
def test_serve_sandbox_prints_one_banner_and_reuses_its_key(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    out, err = _serve_once(tmp_path, port, 1)
    key = (tmp_path / "var" / SANDBOX_KEY_FILE).read_text().strip()
    assert out.count("pbf-headless sandbox is up") == 1
    for line in (f"API        {base}", f"{base}/docs", f"{base}/sandbox/demo"):
        assert line in out
    assert f"export PBF_BASE={base} PBF_API_KEY={key}\n" in out
    assert "new, stored in" in out
    # Plain text, one line per request (ours; uvicorn's duplicate is off), key never logged.
    assert '{"ts"' not in err
    assert len(re.findall(r"^\d\d:\d\d:\d\d GET /healthz 200 [\d.]+ms$", err, re.M)) == 1
    assert key not in err

    out2, _ = _serve_once(tmp_path, port, 2)
    assert f"PBF_API_KEY={key}\n" in out2 and "reused from" in out2
    assert len(_active_sandbox_keys(tmp_path)) == 1


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_api_docs_reference_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    r = await client.get(page)
    assert r.status_code == 200
    parser = _Assets()
    parser.feed(r.text)
    assert len(parser.urls) >= 2
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
    assert "http://" not in r.text and "https://" not in r.text  # no CDN, fonts, validator
    if page == "/docs":
        assert '"validatorUrl": null' in r.text and "url: '/openapi.json'" in r.text


async def test_openapi_document_still_served(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).json()["info"]["title"] == app.title
