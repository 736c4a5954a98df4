"""Attack tests: the sandbox demo page and its API key reach this machine's own demo page
only. A non-loopback peer (also with a forged ``X-Forwarded-For``), a DNS-rebinding host
name, another site's page and production mode all get no page and no key, and no key is made
for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.callers.models import ApiKey
from app.callers.service import revoke_api_key
from app.sandbox.demo.keys import DEMO_KEY_NAME
from tests.fixtures.app import BASE_URL

SAME_ORIGIN = {"Origin": BASE_URL, "Sec-Fetch-Site": "same-origin"}


@asynccontextmanager
async def _client(
    app: FastAPI, peer: str = "127.0.0.1", base_url: str = BASE_URL
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(peer, 40123))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
        yield c


async def _demo_keys(app: FastAPI, *, active_only: bool = False) -> int:
    query = select(func.count()).select_from(ApiKey).where(ApiKey.name == DEMO_KEY_NAME)
    if active_only:
        query = query.where(ApiKey.revoked_at.is_(None))
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(query) or 0)


def _refused(r: httpx.Response, code: str) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code
    assert "pbf_" not in r.text


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "127.8.9.10"])
async def test_the_demo_page_gets_its_page_and_a_demo_scoped_key(app: FastAPI, peer: str) -> None:
    async with _client(app, peer) as c:
        page = await c.get("/sandbox/demo")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        script = await c.get("/sandbox/demo/static/demo.js")
        assert script.status_code == 200 and "/v1/connect-sessions" in script.text
        missing = await c.get("/sandbox/demo/static/keys.py")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")

        made = await c.post("/sandbox/demo/key", headers=SAME_ORIGIN)
        assert made.status_code == 200, made.text
        assert made.headers["cache-control"] == "no-store"
        key = made.json()["key"]
        again = await c.post("/sandbox/demo/key", headers=SAME_ORIGIN)
        assert again.json()["key"] == key  # one key per process, not one per page load

        auth = {"Authorization": f"Bearer {key}"}
        me = (await c.get("/v1/me", headers=auth)).json()
        assert me["scopes"] == ["read", "write"] and me["end_user_prefix"] == "demo-"
        assert (await c.put("/v1/end-users/demo-a", json={}, headers=auth)).status_code in (
            200,
            201,
        )
        # Demo-scoped: other end-users do not exist for it, and admin routes are closed.
        assert (await c.put("/v1/end-users/acme", json={}, headers=auth)).status_code == 404
        admin_only = await c.get("/v1/event-endpoints", headers=auth)
        assert admin_only.status_code == 403 and admin_only.json()["code"] == "insufficient_scope"
    assert await _demo_keys(app) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sandbox/demo"),
        ("GET", "/sandbox/demo/static/demo.js"),
        ("POST", "/sandbox/demo/key"),
    ],
)
@pytest.mark.parametrize("peer", ["203.0.113.7", "10.0.0.5", "::ffff:192.0.2.1", "2001:db8::1"])
async def test_a_non_loopback_peer_gets_no_page_and_no_key(
    app: FastAPI, method: str, path: str, peer: str
) -> None:
    async with _client(app, peer) as c:
        # X-Forwarded-For and Forwarded are not trusted (no proxy headers): still refused.
        headers = {**SAME_ORIGIN, "X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
        _refused(await c.request(method, path, headers=headers), "loopback_only")
    assert await _demo_keys(app) == 0


async def test_a_dns_rebinding_host_gets_no_page_and_no_key(app: FastAPI) -> None:
    """evil.example resolves to 127.0.0.1: the peer is loopback, the Host is not."""
    rebound = "http://evil.example:8000"
    async with _client(app, base_url=rebound) as c:
        _refused(await c.get("/sandbox/demo"), "loopback_only")
        headers = {"Origin": rebound, "Sec-Fetch-Site": "same-origin"}
        _refused(await c.post("/sandbox/demo/key", headers=headers), "loopback_only")
    assert await _demo_keys(app) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},  # no Origin at all (not the page's fetch)
        {"Origin": "null"},
        {"Origin": "http://evil.example"},
        {"Origin": "http://127.0.0.1:9999"},  # another local app on another port
        {"Origin": "http://localhost:8000"},  # same machine, another origin
        {"Origin": BASE_URL, "Sec-Fetch-Site": "cross-site"},
        {"Origin": BASE_URL, "Sec-Fetch-Site": "same-site"},
    ],
)
async def test_another_page_cannot_obtain_the_key(app: FastAPI, headers: dict[str, str]) -> None:
    async with _client(app) as c:
        _refused(await c.post("/sandbox/demo/key", headers=headers), "cross_origin_request")
    assert await _demo_keys(app) == 0


async def test_production_mode_has_no_demo(app_factory: Callable[..., FastAPI], settings) -> None:
    application = app_factory(settings, include_sandbox=False)
    async with application.router.lifespan_context(application), _client(application) as c:
        assert (await c.get("/sandbox/demo")).status_code == 404
        assert (await c.post("/sandbox/demo/key", headers=SAME_ORIGIN)).status_code in (404, 405)
        assert await _demo_keys(application) == 0


async def test_a_new_demo_key_revokes_the_earlier_ones(
    app: FastAPI, make_api_key: Callable[..., Awaitable[str]]
) -> None:
    earlier = await make_api_key(["read", "write"], "demo-", name=DEMO_KEY_NAME)
    async with _client(app) as c:
        key = (await c.post("/sandbox/demo/key", headers=SAME_ORIGIN)).json()["key"]
        old = await c.get("/v1/me", headers={"Authorization": f"Bearer {earlier}"})
        assert old.status_code == 401 and old.json()["code"] == "revoked_credentials"
        # Revoked behind the page's back (CLI): the next request makes a fresh one.
        async with app.state.sessionmaker() as session, session.begin():
            await revoke_api_key(session, key.split("_")[1])
        fresh = (await c.post("/sandbox/demo/key", headers=SAME_ORIGIN)).json()["key"]
        assert fresh != key
        assert (
            await c.get("/v1/me", headers={"Authorization": f"Bearer {fresh}"})
        ).status_code == 200
    assert await _demo_keys(app, active_only=True) == 1
