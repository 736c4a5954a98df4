"""R16: OAuth codes, states, tokens and secrets never reach a log line."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import time

import httpx
import pytest

from app.observability import configure_logging, redact
from tests.fixtures.live_server import PBF_EXE, free_port, server_env

SECRETS = {
    "code": "C0DE-VALUE-123456",
    "state": "ST4TE-VALUE-abcdef",
    "iss": "https://issuer.example/ISSVALUE",
    "refresh_token": "RT-very-secret-987",
    "client_secret": "s3cr3t+with%2Fspecial:chars",
}


@pytest.mark.parametrize(
    "text",
    [
        "GET /oauth/callback/x?code=C0DE-VALUE-123456&state=ST4TE-VALUE-abcdef&iss=ISSVALUE",
        '{"refresh_token": "RT-very-secret-987", "ok": 1}',
        "refresh_token=RT-very-secret-987&grant_type=refresh_token",
        "Authorization: Bearer RT-very-secret-987",
        "client_secret='RT-very-secret-987'",
        "POST /connect/RT-very-secret-987-abcdefghijklmnop 303",
    ],
)
@pytest.mark.db_independent
def test_redact_removes_values(text):
    out = redact(text)
    for value in ("C0DE-VALUE-123456", "ST4TE-VALUE-abcdef", "ISSVALUE", "RT-very-secret-987"):
        assert value not in out


@pytest.mark.db_independent
def test_redact_keeps_harmless_text():
    assert redact("GET /v1/sources?limit=10 200") == "GET /v1/sources?limit=10 200"


async def test_request_with_secrets_in_query_and_body_is_redacted_in_logs(client, caplog):
    stream = io.StringIO()
    handler = configure_logging("DEBUG", json_lines=True, stream=stream)
    caplog.set_level(logging.DEBUG)
    try:
        query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
        await client.get(f"/oauth/callback/salesforce?{query}")
        await client.post(f"/v1/me?{query}", json=SECRETS)
        logging.getLogger("pbf.test").info(
            "token response %s", json.dumps(SECRETS), extra={"refresh_token": "RT-very-secret-987"}
        )
        try:
            raise ValueError(f"upstream said refresh_token={SECRETS['refresh_token']}")
        except ValueError:
            logging.getLogger("pbf.test").exception("failure")
    finally:
        logging.getLogger().removeHandler(handler)
    written = stream.getvalue()
    assert "/oauth/callback/salesforce" in written  # the access line is there...
    captured = written + caplog.text + repr([r.__dict__ for r in caplog.records])
    for value in SECRETS.values():
        assert value not in captured  # ...without any of the values
        assert value.split("/")[-1] not in captured


def test_real_server_access_log_is_redacted(database_url, tmp_path):
    """`pbf-headless serve` on loopback: uvicorn's and our access lines carry no secrets."""
    if not database_url.startswith("sqlite"):
        pytest.skip("one backend is enough for the process-level check")
    port = free_port()
    env = server_env(
        database_url=database_url,
        data_dir=tmp_path / "var",
        base=f"http://127.0.0.1:{port}",
        PBF_LOG_LEVEL="DEBUG",
    )
    exe = PBF_EXE
    proc = subprocess.Popen(
        [str(exe), "serve", "--sandbox", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("server did not start")
        query = "&".join(f"{k}={v}" for k, v in SECRETS.items())
        httpx.get(f"http://127.0.0.1:{port}/oauth/callback/salesforce?{query}", timeout=5)
        httpx.get(
            f"http://127.0.0.1:{port}/v1/me?{query}",
            timeout=5,
            headers={"Authorization": "Bearer RT-very-secret-987"},
        )
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    text = out.decode()
    assert "/oauth/callback/salesforce" in text
    for value in SECRETS.values():
        assert value not in text


@pytest.mark.parametrize(
    "line",
    [
        # RFC 6749 A.11: a code is 1*VSCHAR, so ',', ';', quotes may appear raw in a query.
        "GET /oauth/callback/x?code=C0DE,VALUE-123456&state=ST4TE;VALUE-abcdef 303",
        "GET /oauth/callback/x?state=ST4TE'VALUE-abcdef&code=C0DE\"VALUE-123456 303",
        '127.0.0.1:1 - "GET /oauth/callback/x?code=C0DE;VALUE-123456 HTTP/1.1" 303',
        '{"url":"/cb?code=C0DE","refresh_token": "RT-VALUE-123456"}',
    ],
)
@pytest.mark.db_independent
def test_redact_removes_whole_query_values_with_punctuation(line):
    """The access log must not keep the tail of a code or state after a ',', ';' or quote."""
    out = redact(line)
    assert "VALUE-123456" not in out and "VALUE-abcdef" not in out, out
