"""Findings of the outside probe on the public browser endpoints and the logs: no rate limit
on /connect/* and /oauth/callback/*, query strings logged in full twice, Fivetran error codes
hidden by the OAuth-code redaction."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings


@pytest.fixture
async def limited(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[httpx.AsyncClient]:
    from app.main import create_app

    settings = settings_factory(rate_limit={"per_ip": "30/minute", "per_session": "5/minute"})
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application, client=("203.0.113.7", 5000)),
            base_url="http://127.0.0.1:8000",
        ) as c:
            yield c


async def test_random_tokens_on_connect_are_rate_limited_per_ip(
    limited: httpx.AsyncClient,
) -> None:
    statuses = []
    for _ in range(60):
        r = await limited.get(f"/connect/{secrets.token_urlsafe(24)}")
        statuses.append(r.status_code)
    assert statuses.count(429) == 30, statuses
    r = await limited.get(f"/oauth/callback/hubspot?state={secrets.token_urlsafe(16)}&code=x")
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("text/html")
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "Too many requests" in r.text


async def test_one_session_token_is_rate_limited(limited: httpx.AsyncClient) -> None:
    token = secrets.token_urlsafe(24)
    statuses = [(await limited.get(f"/connect/{token}")).status_code for _ in range(8)]
    assert statuses[:5] == [400] * 5 or 429 not in statuses[:5], statuses
    assert statuses[5:] == [429, 429, 429], statuses


async def test_api_routes_are_not_browser_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(40):
        assert (await limited.get("/healthz")).status_code == 200


async def test_rate_limit_shared_through_redis(
    settings_factory: Callable[..., Settings],
) -> None:
    """Two app instances (replicas) with one Redis share the per-IP window."""
    from app.main import create_app

    redis_url = "redis://127.0.0.1:6379/0"
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("Redis not reachable")
    prefix = f"pbf-test-rl-{secrets.token_hex(6)}"
    settings = settings_factory(
        redis_url=redis_url, rate_limit={"per_ip": "10/minute", "redis_prefix": prefix}
    )
    statuses = []
    for _ in range(2):
        application = create_app(settings)
        async with application.router.lifespan_context(application):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application, client=("198.51.100.9", 1)),
                base_url="http://127.0.0.1:8000",
            ) as c:
                statuses += [
                    (await c.get(f"/connect/{secrets.token_urlsafe(24)}")).status_code
                    for _ in range(8)
                ]
    assert statuses.count(429) == 6, statuses


async def test_long_query_strings_are_logged_bounded_once(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    junk = "x" * 7000
    await client.get(f"/oauth/callback/hubspot?state=abc&junk={junk}")
    access = [r for r in caplog.records if r.name in ("pbf.access", "uvicorn.access")]
    assert len(access) == 1
    assert len(access[0].getMessage()) < 1200


@pytest.mark.db_independent
def test_fivetran_error_codes_survive_redaction_oauth_codes_do_not() -> None:
    from app.observability import REDACTED, redact_value

    assert redact_value("code", "NotFound_Integration") == "NotFound_Integration"
    assert redact_value("code", "fivetran_rate_limited") == "fivetran_rate_limited"
    assert redact_value("state", "creating") == "creating"
    assert redact_value("code", "4/0AfJohXk9-real-oauth-code") == REDACTED
    assert redact_value("state", "Zk3xQ9_ab1") == REDACTED
    assert redact_value("refresh_token", "abc") == REDACTED


async def test_fivetran_code_in_a_warning_is_readable(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    from app.observability import RedactionFilter

    caplog.set_level(logging.WARNING)
    record = logging.LogRecord(
        "pbf.onboarding", logging.WARNING, "", 0, "resume failed", None, None
    )
    record.code = "fivetran_unavailable"
    RedactionFilter().filter(record)
    assert record.code == "fivetran_unavailable"


BROWSER_REFUSALS = [
    ("/connect/a%00b", 400),
    ("/connect/tok?x=a%00b", 400),
    ("/connect/" + "t" * 10, 414),  # with the query below: over the query cap
    ("/oauth/callback/hubspot?state=a%00b&code=c", 400),
    ("/oauth/callback/hubspot?state=%ED%BF%BF&code=c", 400),
]


@pytest.mark.parametrize(("path", "status"), BROWSER_REFUSALS)
async def test_input_guard_refusals_on_browser_pages_are_html_pages(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    """The edge guard answers a browser page with the end-user error page (localised,
    no-store, CSP), not a JSON problem an end-user cannot read."""
    if status == 414:
        path += "?junk=" + "x" * 9000
    r = await client.get(path, headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("text/html"), r.headers["content-type"]
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    assert '<html lang="de">' in r.text
    assert "Diese Adresse kann nicht verwendet werden" in r.text
    assert "\x00" not in r.text and "a%00b" not in r.text  # nothing of the request echoed


async def test_input_guard_refusals_on_api_routes_stay_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/connections?end_user=a%00b", headers={"Accept": "text/html"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
