"""Fixtures of the connect-flow attack tests: the real app (sandbox mode) over ASGI, a browser
with its own cookie jar, a spy on every outbound token-endpoint request, and row counters.

The browser keeps ``__Host-`` cookies itself: httpx's cookie jar never sends a ``Secure``
cookie over ``http://``, and the tests want explicit control over which jar sends what.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.config import Settings

BASE_URL = "http://127.0.0.1:8000"
APP_ORIGIN = "https://app.example.com"
RETURN_TO = f"{APP_ORIGIN}/connected?tab=sources"
COOKIE = "__Host-oauth_flow"


class SpyTransport(httpx.AsyncBaseTransport):
    """Wraps the app's outbound transport and records every request (method, URL path).

    ``drop_response_for`` simulates a connection lost after the server answered: the request
    is delivered, its response discarded and a transport error raised instead.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[bytes] = []
        self.headers: list[httpx.Headers] = []
        self.drop_response_for: int = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append((request.method, request.url.path))
        self.bodies.append(body)
        self.headers.append(request.headers)
        response = await self.inner.handle_async_request(request)
        if self.drop_response_for > 0 and request.url.path.endswith("/token"):
            self.drop_response_for -= 1
            await response.aread()
            raise httpx.ReadError("connection lost after the request was sent")
        return response

    def token_requests(self, provider_key: str | None = None) -> list[tuple[str, str]]:
        return [
            r
            for r in self.requests
            if r[1].endswith("/token")
            and (provider_key is None or r[1].startswith(f"/sandbox/oauth/{provider_key}/"))
        ]

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Browser:
    """One user agent: its own cookie jar, top-level navigations only."""

    client: httpx.AsyncClient
    cookies: dict[str, str] = field(default_factory=dict)
    last_binding: str = ""
    #: every secret value this browser saw (checked against the logs after each test)
    sink: list[str] = field(default_factory=list)

    def _cookie_header(self) -> dict[str, str]:
        if not self.cookies:
            return {}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}

    def _keep(self, response: httpx.Response) -> None:
        for raw in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or morsel.value == "":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
                    self.last_binding = morsel.value
                    self.sink.append(morsel.value)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        headers = {**self._cookie_header(), **kw.pop("headers", {})}
        response = await self.client.get(url, headers=headers, **kw)
        self._keep(response)
        return response

    async def post(self, url: str, *, origin: str | None = APP_ORIGIN, **kw: Any) -> httpx.Response:
        headers = {**self._cookie_header(), **kw.pop("headers", {})}
        if origin is not None:
            headers["Origin"] = origin
        response = await self.client.post(
            url,
            headers=headers,
            content=b"",
            **kw,
        )
        self._keep(response)
        return response


@dataclass
class FlowHarness:
    app: FastAPI
    client: httpx.AsyncClient
    spy: SpyTransport
    headers: dict[str, str]
    #: code / state / binding-cookie values seen in the test (must never reach a log line)
    secrets_seen: list[str] = field(default_factory=list)

    def browser(self) -> Browser:
        return Browser(self.client, sink=self.secrets_seen)

    async def end_user(self, external_id: str = "acme", name: str = "Acme Corp") -> None:
        r = await self.client.put(
            f"/v1/end-users/{external_id}", json={"name": name}, headers=self.headers
        )
        if r.status_code == 404 and r.json().get("code") == "not_found":
            # The end-users router is not mounted yet: use the service directly.
            from app.callers.service import Caller
            from app.onboarding.end_users import upsert_end_user

            caller = Caller(key_id="tests", name="tests", scopes=frozenset({"admin"}))
            async with self.app.state.sessionmaker() as s, s.begin():
                await upsert_end_user(
                    s, self.app.state, caller=caller, external_id=external_id, name=name
                )
            return
        assert r.status_code in (200, 201), r.text

    async def create_session(
        self,
        service: str,
        *,
        end_user: str = "acme",
        headers: dict[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        payload = {"end_user": end_user, "service": service, "return_to": RETURN_TO, **body}
        return await self.client.post(
            "/v1/connect-sessions", json=payload, headers=headers or self.headers
        )

    async def session(self, service: str, **body: Any) -> dict[str, Any]:
        r = await self.create_session(service, **body)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    async def start(self, browser: Browser, connect_url: str) -> str:
        """POST the start form; returns the provider's authorization URL."""
        r = await browser.post(connect_url)
        assert r.status_code == 303, r.text
        assert COOKIE in browser.cookies
        return r.headers["location"]

    async def consent(self, authorize_url: str, *, login_hint: str = "auto") -> str:
        """The sandbox authorization server approves (or denies); returns the callback URL."""
        url = with_params(authorize_url, login_hint=login_hint)
        r = await self.client.get(url)
        assert r.status_code in (302, 303), (r.status_code, r.text[:500])
        location = r.headers["location"]
        params = query_of(location)
        self.secrets_seen += [v for k, v in params.items() if k in ("code", "auth_code", "state")]
        return location

    async def callback_url_for(self, service: str, **body: Any) -> tuple[Browser, str, dict]:
        """A started flow up to the provider's redirect: (browser, callback URL, session)."""
        created = await self.session(service, **body)
        browser = self.browser()
        authorize_url = await self.start(browser, created["connect_url"])
        return browser, await self.consent(authorize_url), created

    async def count(self, model: Any, *where: Any) -> int:
        async with self.app.state.sessionmaker() as s:
            stmt = select(func.count()).select_from(model)
            for clause in where:
                stmt = stmt.where(clause)
            return int(await s.scalar(stmt) or 0)

    async def rows(self) -> dict[str, int]:
        from app.onboarding.connect.models import ConnectSession, OAuthFlow, OAuthGrant
        from app.onboarding.models import Connection
        from app.vault.models import VaultSecret

        return {
            "connections": await self.count(Connection),
            "connection_secrets": await self.count(
                VaultSecret, VaultSecret.owner_type == "connection"
            ),
            "grants": await self.count(OAuthGrant),
            "sessions": await self.count(ConnectSession),
            "flows": await self.count(OAuthFlow),
            "fivetran_connections": len(await self.fivetran_connections()),
        }

    async def fivetran_connections(self) -> list[dict[str, Any]]:
        r = await self.client.get("/sandbox/fivetran/_control/requests")
        if r.status_code != 200:
            return []
        items = (r.json().get("data") or {}).get("items") or []
        return [
            e
            for e in items
            if isinstance(e, dict)
            and e.get("method") == "POST"
            and str(e.get("path", "")).rstrip("/").endswith("/v1/connections")
        ]

    async def misbehave(self, provider_key: str, kind: str, count: int = 1) -> None:
        """Queue a misbehaving token response at the sandbox authorization server."""
        r = await self.client.post(
            "/sandbox/oauth/_control/misbehave",
            json={"provider_key": provider_key, "kind": kind, "count": count},
        )
        assert r.status_code == 200, r.text

    async def as_token_requests(self) -> list[dict[str, Any]]:
        """The sandbox authorization server's own log of token-endpoint hits."""
        r = await self.client.get("/sandbox/oauth/_control/token-requests")
        assert r.status_code == 200, r.text
        return list(r.json()["items"])

    async def stored_tokens(self, connection_id: str) -> tuple[str, str]:
        """(access token, refresh token) of a connection, decrypted from the vault."""
        from app.onboarding.models import Connection

        async with self.app.state.sessionmaker() as s:
            conn = await s.get(Connection, connection_id)
            assert conn is not None
            out = []
            for name in ("access_token", "refresh_token"):
                secret = await self.app.state.vault.get(
                    s,
                    end_user_id=conn.end_user_id,
                    owner_type="connection",
                    owner_id=connection_id,
                    field=name,
                )
                out.append(secret.reveal() if secret is not None else "")
        return out[0], out[1]

    async def database_dump(self) -> bytes:
        """Every row of every table as text (plus the SQLite file's bytes)."""
        from sqlalchemy import text

        chunks: list[bytes] = []
        engine = self.app.state.engine
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                names = (
                    await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
                ).scalars()
            else:
                names = (
                    await conn.execute(
                        text("SELECT tablename FROM pg_tables WHERE schemaname='public'")
                    )
                ).scalars()
            for name in list(names):
                for row in (await conn.execute(text(f'SELECT * FROM "{name}"'))).all():
                    for value in row:
                        chunks.append(value if isinstance(value, bytes) else str(value).encode())
        if engine.dialect.name == "sqlite":
            from pathlib import Path

            db = Path(engine.url.database or "")
            for path in (db, Path(f"{db}-wal")):
                if path.exists():
                    chunks.append(path.read_bytes())
        return b"\n".join(chunks)

    async def session_status(self, session_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v1/connect-sessions/{session_id}", headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def with_params(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def relative(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


@pytest.fixture
def flow_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(api={"allowed_origins": [APP_ORIGIN]})


@pytest.fixture
async def harness(
    flow_settings: Settings,
    make_flow_harness: Callable[[Settings], Awaitable[FlowHarness]],
    all_logs: pytest.LogCaptureFixture,
) -> AsyncIterator[FlowHarness]:
    """The app, a spy on its token requests, and — after every test — the check that no
    code, state or binding-cookie value the test saw reached any log record (R16)."""
    h = await make_flow_harness(flow_settings)
    yield h
    # At teardown ``caplog.records`` holds only this phase: read the setup and call phases.
    text = log_text(all_logs, phases=("setup", "call"))
    for value in h.secrets_seen:
        assert value not in text, "a code/state/cookie value reached the logs"


@pytest.fixture
async def make_flow_harness() -> AsyncIterator[Callable[..., Awaitable[FlowHarness]]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    stack: list[Any] = []

    async def make(
        settings: Settings, outbound_transport: httpx.AsyncBaseTransport | None = None
    ) -> FlowHarness:
        application = create_app(settings, outbound_transport=outbound_transport)
        ctx = application.router.lifespan_context(application)
        await ctx.__aenter__()
        stack.append(ctx)
        if not hasattr(application.state, "providers"):  # until the lifespan starts them
            from app.providers.startup import start_providers

            await start_providers(application, settings)
        if not any(getattr(r, "path", "") == "/sandbox/oauth" for r in application.routes):
            from app.sandbox.oauth.app import mount_sandbox_oauth  # until main mounts it

            mount_sandbox_oauth(application)
        spy = SpyTransport(application.state.outbound_transport)
        application.state.outbound_transport = spy
        async with application.state.sessionmaker() as session, session.begin():
            _, key = await create_api_key(session, name="flow-tests", scopes=["admin"])
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url=BASE_URL
        )
        stack.append(client)
        return FlowHarness(application, client, spy, {"Authorization": f"Bearer {key}"})

    yield make
    for item in reversed(stack):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, through the same redaction the service installs."""
    from app.observability import RedactionFilter

    caplog.set_level(logging.DEBUG)
    # aiosqlite logs every driver call at DEBUG ("executing functools.partial(...)"): pure
    # volume, no values — left at INFO so the suite stays fast.
    caplog.set_level(logging.INFO, logger="aiosqlite")
    caplog.handler.addFilter(RedactionFilter())
    return caplog


def log_text(caplog: pytest.LogCaptureFixture, phases: tuple[str, ...] = ()) -> str:
    parts = []
    records = (
        [r for phase in phases for r in caplog.get_records(phase)]  # type: ignore[arg-type]
        if phases
        else caplog.records
    )
    for record in records:
        parts.append(record.getMessage())
        parts.append(str(record.__dict__))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)
