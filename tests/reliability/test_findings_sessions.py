"""Findings of the outside probe on connect sessions: a callback interrupted by a crash must
still end the session (with exactly one ``connect_session.*`` event), and a session dies with
the API key that minted it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.db import utcnow
from tests.fixtures.browser import Browser
from tests.fixtures.onboarding import APP_ORIGIN, RETURN_TO, vault_rows
from tests.reliability.browser import to_callback


async def _session(
    api: httpx.AsyncClient, end_user: str = "org-1", service: str = "hubspot"
) -> dict[str, str]:
    r = await api.put(f"/v1/end-users/{end_user}", json={"name": "Org"})
    assert r.status_code in (200, 201), r.text
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": end_user, "service": service, "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _to_callback(browser: Browser, connect_url: str) -> str:
    callback, failure = await to_callback(browser, connect_url)
    assert callback is not None, failure
    return callback


async def _settle(app: FastAPI) -> int:
    from app.connect.recovery import settle_interrupted_sessions

    async with app.state.sessionmaker() as s:
        n = await settle_interrupted_sessions(s, app.state, now=utcnow() + timedelta(hours=1))
        await s.commit()
    return n


async def test_crash_after_state_consumed_settles_the_session(
    api: httpx.AsyncClient, app: FastAPI, count_rows: Callable[..., Awaitable[int]]
) -> None:
    from app.connect.models import OAuthFlow
    from app.connect.service import expire_stale_sessions

    created = await _session(api)
    browser = Browser(api, origin=APP_ORIGIN)
    await _to_callback(browser, created["connect_url"])
    # What the callback's first durable point leaves when the process dies right after it.
    async with app.state.sessionmaker() as s:
        await s.execute(update(OAuthFlow).values(consumed_at=utcnow(), status="consumed"))
        await s.commit()
    # The expiry sweep alone never ends it (the probe's finding) ...
    async with app.state.sessionmaker() as s:
        await expire_stale_sessions(s, app.state, now=utcnow() + timedelta(days=2))
        await s.commit()
    assert (await api.get(f"/v1/connect-sessions/{created['id']}")).json()["status"] == "pending"
    # ... the settlement does, once.
    assert await _settle(app) == 1
    assert await _settle(app) == 0
    body = (await api.get(f"/v1/connect-sessions/{created['id']}")).json()
    assert body["status"] == "failed", body
    assert await count_rows("events", "kind = 'connect_session.failed'") == 1
    assert await count_rows("connections", "state IN ('pending', 'authorizing')") == 0


async def test_crash_after_tokens_stored_finishes_the_connection(
    api: httpx.AsyncClient,
    app: FastAPI,
    count_rows: Callable[..., Awaitable[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.connect import callback as connect_callback
    from app.connections.service import resume_creating

    created = await _session(api)
    browser = Browser(api, origin=APP_ORIGIN)
    callback = await _to_callback(browser, created["connect_url"])

    async def crash(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError  # the process dies after the tokens were committed

    monkeypatch.setattr(connect_callback, "complete_oauth", crash)
    with pytest.raises(BaseException):  # noqa: B017
        await api.get(callback, headers=browser._cookie_header())
    monkeypatch.undo()
    assert await vault_rows(app) >= 1  # the tokens are stored
    assert await count_rows("connections", "state = 'authorizing'") == 1
    assert await _settle(app) == 0  # moved to creating: the resume finishes it
    async with app.state.sessionmaker() as s:
        assert await resume_creating(s, app.state) == 1
        await s.commit()
    assert await _settle(app) == 1
    body = (await api.get(f"/v1/connect-sessions/{created['id']}")).json()
    assert body["status"] == "completed", body
    assert await count_rows("events", "kind = 'connect_session.completed'") == 1
    assert await count_rows("connections", "state = 'connected'") == 1


async def test_crash_after_tokens_stored_of_a_picker_source_waits_for_the_choice(
    api: httpx.AsyncClient,
    app: FastAPI,
    count_rows: Callable[..., Awaitable[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.connect import callback as connect_callback

    created = await _session(api, service="facebook_ads")
    browser = Browser(api, origin=APP_ORIGIN)
    callback = await _to_callback(browser, created["connect_url"])

    async def crash(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError  # the process dies after the tokens were committed

    monkeypatch.setattr(connect_callback, "await_configuration", crash)
    with pytest.raises(BaseException):  # noqa: B017
        await api.get(callback, headers=browser._cookie_header())
    monkeypatch.undo()
    assert await count_rows("connections", "state = 'authorizing'") == 1
    # Never created without the end-user's choice: it waits for it, the session completes.
    assert await _settle(app) == 1
    assert await _settle(app) == 0
    body = (await api.get(f"/v1/connect-sessions/{created['id']}")).json()
    assert body["status"] == "completed", body
    assert await count_rows("connections", "state = 'needs_configuration'") == 1
    assert await count_rows("events", "kind = 'connection.needs_configuration'") == 1
    r = await api.get(f"/v1/connections/{body['connection_id']}/options")
    assert r.status_code == 200, r.text
    assert r.json()["options"]["accounts"]


async def test_session_minted_by_a_revoked_key_cannot_complete(
    app: FastAPI,
    client: httpx.AsyncClient,
    make_api_key: Callable[..., Awaitable[str]],
    count_rows: Callable[..., Awaitable[int]],
) -> None:
    from app.callers.service import revoke_api_key

    key = await make_api_key(["admin"])
    client.headers["Authorization"] = f"Bearer {key}"
    first = await _session(client, "org-2")
    second = await _session(client, "org-2")
    browser = Browser(client, origin=APP_ORIGIN)
    callback = await _to_callback(browser, second["connect_url"])
    async with app.state.sessionmaker() as s, s.begin():
        await revoke_api_key(s, key.split("_")[1])
    # Started before the revocation: the callback refuses to complete it.
    r = await client.get(callback, headers=browser._cookie_header())
    assert r.status_code == 303, r.text[:300]
    assert dict(parse_qsl(urlsplit(r.headers["location"]).query))["error"] == "key_revoked"
    # Not started yet: the start refuses it.
    r = await client.post(first["connect_url"], headers={"Origin": APP_ORIGIN}, content=b"")
    assert r.status_code != 303, r.status_code
    assert await count_rows("connections", "state = 'connected'") == 0
    assert await vault_rows(app) == 0
    assert await count_rows("connect_sessions", "status = 'pending'") == 0
