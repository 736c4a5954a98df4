"""Fixtures of the onboarding tests: an authorized client, simulator control, row counts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

SIM = "/sandbox/fivetran"
CONTROL = f"{SIM}/_control"


@pytest.fixture
async def api(client: httpx.AsyncClient, auth_headers: dict[str, str]) -> httpx.AsyncClient:
    """The app client with an admin key on every request."""
    client.headers.update(auth_headers)
    return client


@pytest.fixture
def count_rows(app: FastAPI) -> Callable[..., Awaitable[int]]:
    """``await count_rows("table", "where clause")`` in the app's database."""

    async def count(table: str, where: str | None = None, **params: Any) -> int:
        sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
        async with app.state.sessionmaker() as session:
            return int((await session.execute(text(sql), params)).scalar_one())

    return count


@pytest.fixture
def sim(client: httpx.AsyncClient) -> Simulator:
    return Simulator(client)


class Simulator:
    """The Fivetran simulator's control API and a Basic-auth view of its REST API."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.auth = ("sandbox_key", "sandbox_secret")

    async def fault(self, **fault: Any) -> None:
        r = await self.client.post(f"{CONTROL}/faults", json=fault)
        assert r.status_code == 201, r.text

    async def clear_faults(self) -> None:
        await self.client.delete(f"{CONTROL}/faults")

    async def requests(self) -> list[dict[str, Any]]:
        r = await self.client.get(f"{CONTROL}/requests")
        assert r.status_code == 200, r.text
        body = r.json()
        data = body.get("data", body)
        return list(data.get("items", data) if isinstance(data, dict) else data)

    async def break_connection(self, fivetran_id: str) -> None:
        r = await self.client.post(f"{CONTROL}/connections/{fivetran_id}/break")
        assert r.status_code < 300, r.text

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(
            f"{SIM}{path}",
            auth=self.auth,
            headers={"Authorization": "", "Accept": "application/json;version=2"},
        )

    async def connections_in(self, group_id: str) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"{SIM}/v1/groups/{group_id}/connections",
            auth=self.auth,
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 200, r.text
        return list(r.json()["data"]["items"])


def problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert a problem-details response and return its body."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    if code is not None:
        assert body["code"] == code, body
    return body


async def vault_rows(app: FastAPI, end_user_id: str | None = None) -> int:
    from app.vault.models import VaultSecret

    async with app.state.sessionmaker() as session:
        stmt = select(func.count()).select_from(VaultSecret)
        if end_user_id is not None:
            stmt = stmt.where(VaultSecret.end_user_id == end_user_id)
        return int((await session.execute(stmt)).scalar_one())


RETURN_TO = "http://127.0.0.1:3000/onboarding/done"
APP_ORIGIN = "http://127.0.0.1:3000"


class EndUserBrowser:
    """The end-user's browser through the connect flow: start form, sandbox consent,
    callback. Keeps its own cookies (``__Host-`` cookies are never sent over http by httpx)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def _remember(self, response: httpx.Response) -> None:
        from http.cookies import SimpleCookie

        for raw in response.headers.get_list("set-cookie"):
            jar: SimpleCookie = SimpleCookie()
            jar.load(raw)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0" or not morsel.value:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    def _headers(self) -> dict[str, str]:
        return (
            {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            if self.cookies
            else {}
        )

    async def connect(self, connect_url: str, *, login_hint: str = "auto") -> dict[str, str]:
        """Run the whole flow; returns the query of the final redirect to ``return_to``."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        r = await self.client.post(
            connect_url, headers={**self._headers(), "Origin": APP_ORIGIN}, content=b""
        )
        assert r.status_code == 303, (r.status_code, r.text[:300])
        self._remember(r)
        authorize = urlsplit(r.headers["location"])
        query = [(k, v) for k, v in parse_qsl(authorize.query) if k != "login_hint"]
        query.append(("login_hint", login_hint))
        r = await self.client.get(urlunsplit(authorize._replace(query=urlencode(query))))
        assert r.status_code in (302, 303), (r.status_code, r.text[:300])
        r = await self.client.get(r.headers["location"], headers=self._headers())
        assert r.status_code == 303, (r.status_code, r.text[:300])
        self._remember(r)
        final = urlsplit(r.headers["location"])
        assert f"{final.scheme}://{final.netloc}{final.path}" == RETURN_TO, r.headers["location"]
        return dict(parse_qsl(final.query))


async def oauth_connect(
    api: httpx.AsyncClient, end_user: str, service: str, **extra: Any
) -> dict[str, str]:
    """Connect session + browser flow for ``service``; returns the return_to query."""
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": end_user, "service": service, "return_to": RETURN_TO, **extra},
    )
    assert r.status_code == 201, r.text
    return await EndUserBrowser(api).connect(r.json()["connect_url"])
