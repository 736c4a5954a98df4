"""The in-process cache of verified API keys (``api.key_cache_seconds``).

Attack tests: a revoked key stops working at once in the revoking process; a revocation made
elsewhere (another process: here a direct database update) is honoured once the entry
expires — never later; a cached key id never authenticates another secret; the cache can be
turned off. The cache's clock is replaced (no timed assertions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.callers.keycache import key_cache
from app.callers.models import ApiKey
from app.callers.service import revoke_api_key
from app.db import utcnow
from tests.fixtures.app import BASE_URL


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(key_cache, "_clock", fake)
    key_cache.clear()
    yield fake
    key_cache.clear()


async def _revoke_elsewhere(app: FastAPI, key: str) -> None:
    """What another process (the CLI, another worker) does: only the database changes."""
    async with app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(ApiKey).where(ApiKey.id == key.split("_")[1]).values(revoked_at=utcnow())
        )


async def _me(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})


async def test_revocation_in_this_process_is_immediate_for_a_cached_key(
    client, app, make_api_key, clock
):
    key = await make_api_key(["read"])
    assert (await _me(client, key)).status_code == 200
    assert (await _me(client, key)).status_code == 200  # served from the cache
    async with app.state.sessionmaker() as s, s.begin():
        await revoke_api_key(s, key.split("_")[1])
    r = await _me(client, key)
    assert r.status_code == 401
    assert r.json()["code"] == "revoked_credentials"
    clock.now += 3600  # nothing brings it back
    assert (await _me(client, key)).status_code == 401


async def test_revocation_elsewhere_takes_effect_when_the_entry_expires(
    client, app, make_api_key, clock
):
    key = await make_api_key(["read"])
    assert (await _me(client, key)).status_code == 200
    await _revoke_elsewhere(app, key)
    # Within key_cache_seconds (default 5 s) this process still trusts its verification...
    clock.now += app.state.settings.api.key_cache_seconds - 0.5
    assert (await _me(client, key)).status_code == 200
    # ...and not a moment after.
    clock.now += 1.0
    r = await _me(client, key)
    assert r.status_code == 401
    assert r.json()["code"] == "revoked_credentials"


async def test_cached_key_id_does_not_accept_another_secret(client, make_api_key, clock):
    key = await make_api_key(["read"])
    assert (await _me(client, key)).status_code == 200
    prefix, key_id, secret = key.split("_", 2)
    forged = f"{prefix}_{key_id}_{'A' * len(secret)}"
    r = await _me(client, forged)
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_credentials"
    assert (await _me(client, key)).status_code == 200


async def test_last_used_is_still_recorded(client, app, make_api_key, clock):
    key = await make_api_key(["read"])
    assert (await _me(client, key)).status_code == 200
    async with app.state.sessionmaker() as s:
        used = await s.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key.split("_")[1]))
    assert used is not None


@pytest.fixture
async def uncached_client(settings_factory) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    from app.main import create_app

    application = create_app(settings_factory(api={"key_cache_seconds": 0}))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
            yield application, c


async def test_cache_off_sees_a_revocation_elsewhere_at_once(uncached_client, clock):
    from app.callers.service import create_api_key

    application, client = uncached_client
    async with application.state.sessionmaker() as s, s.begin():
        _, key = await create_api_key(s, name="t", scopes=["read"])
    assert (await _me(client, key)).status_code == 200
    await _revoke_elsewhere(application, key)
    assert (await _me(client, key)).status_code == 401
