"""Fault matrix: OAuth onboardings while 20 % of Fivetran calls fail (5xx, timeouts, 429 with
Retry-After, responses lost after processing), the token endpoint misbehaves, and (on
PostgreSQL) the service's database connections are killed mid-run. After the recovery paths
(resume, session settlement, event worker) every loss count must be 0.

``make test`` runs a small instance; ``make reliability`` runs ≥ 200 onboardings
(``PBF_RELIABILITY_ONBOARDINGS``).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from app.config import Settings
from app.db import utcnow
from tests.fixtures.app import TEST_DB
from tests.fixtures.browser import Browser
from tests.fixtures.events import Receiver, endpoint_config
from tests.fixtures.onboarding import APP_ORIGIN, RETURN_TO
from tests.reliability import figures
from tests.reliability.browser import to_callback

SIM = "/sandbox/fivetran"
FIVETRAN_CALLS = [
    ("POST", r"^/v1/connections/?$"),
    ("GET", r"^/v1/groups/[^/]+/connections"),
    ("POST", r"^/v1/connections/[^/]+/test"),
    ("PATCH", r"^/v1/connections/[^/]+/schemas"),
    ("PATCH", r"^/v1/connections/[^/]+$"),
    ("GET", r"^/v1/connections/[^/]+/schemas"),
]
#: Token endpoint failing (a 502 page, an error in a 200, no refresh token, a bad
#: ``expires_in``) or slow (a correct answer after our token timeout).
TOKEN_FAULTS = ["html_502", "error_200", "no_refresh_token", "string_expires_in", "slow"]
TOKEN_TIMEOUT = 0.5
SERVICES = ["hubspot", "salesforce", "google_sheets"]


def _fault(rng: random.Random, method: str, regex: str) -> dict[str, Any]:
    kind = rng.choice(["5xx", "timeout", "429", "lost"])
    base: dict[str, Any] = {"method": method, "path_regex": regex, "count": 1}
    if kind == "5xx":
        return {**base, "status": rng.choice([500, 502, 503])}
    if kind == "timeout":
        return {**base, "status": None, "delay_seconds": 0.6}
    if kind == "429":
        return {**base, "status": 429, "retry_after": 1}
    return {**base, "status": 502, "after": True}


@pytest.fixture
async def matrix_app(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, Receiver]]:
    from app.callers.service import create_api_key
    from app.main import create_app

    receiver = Receiver()
    settings = settings_factory(
        fivetran={"timeout_seconds": 0.3, "max_retries": 1},
        rate_limit={"per_ip": "1000000/minute", "per_session": "1000/minute"},
        events={"endpoints": [endpoint_config()], "run_worker_in_api": False},
        connect={"expiry_sweep_seconds": 0},
        oauth={"token_timeout_seconds": TOKEN_TIMEOUT},
    )
    application = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with application.router.lifespan_context(application):
        async with application.state.sessionmaker() as s, s.begin():
            _, key = await create_api_key(s, name="matrix", scopes=["admin"])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application),
            base_url="http://127.0.0.1:8000",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ) as c:
            yield application, c, receiver


async def _browser_flow(api: httpx.AsyncClient, connect_url: str) -> str:
    """The end-user's browser, tolerant of failures; returns the outcome status."""
    browser = Browser(api, origin=APP_ORIGIN)
    callback, failure = await to_callback(browser, connect_url)
    if callback is None:
        return failure
    r = await api.get(callback, headers=browser._cookie_header())
    if r.status_code != 303:
        return f"callback_{r.status_code}"
    return dict(parse_qsl(urlsplit(r.headers["location"]).query)).get("status", "?")


async def _kill_db_connections(app: FastAPI) -> int:
    """Simulate a database restart for this service only: terminate the backends connected
    to its own database (other engineers share the server)."""
    async with app.state.sessionmaker() as s:
        dbname = (await s.execute(text("select current_database()"))).scalar_one()
    admin_url = os.environ.get("PBF_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        rows = await conn.fetch(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = $1 and pid <> pg_backend_pid()",
            dbname,
        )
    finally:
        await conn.close()
    return len(rows)


async def _recover(app: FastAPI, receiver: Receiver, worker_for: Any, clock: Any) -> None:
    from app.connect.recovery import settle_interrupted_sessions
    from app.connect.service import expire_stale_sessions
    from app.connections.service import resume_creating

    await app.state.http.post(f"http://127.0.0.1:8000{SIM}/_control/faults", json={})
    for _ in range(4):
        async with app.state.sessionmaker() as s:
            await resume_creating(s, app.state)
            await s.commit()
        async with app.state.sessionmaker() as s:
            later = utcnow() + timedelta(days=1)
            await settle_interrupted_sessions(s, app.state, now=later)
            await expire_stale_sessions(s, app.state, now=later)
            await s.commit()
    clock.advance(3600)
    await worker_for(app).run_until_idle(max_rounds=500)


async def invariants(app: FastAPI, api: httpx.AsyncClient, receiver: Receiver) -> dict[str, int]:
    """The loss counts (all must be 0)."""
    from app.connect.models import ConnectSession, OAuthFlow
    from app.connections.models import Connection
    from app.events.models import EventDelivery
    from app.vault.models import VaultSecret

    r = await api.get(
        f"{SIM}/v1/connections",
        params={"limit": 1000},
        auth=("sandbox_key", "sandbox_secret"),
        headers={"Authorization": "", "Accept": "application/json;version=2"},
    )
    remote = r.json()["data"]["items"]
    async with app.state.sessionmaker() as s:
        conns = list((await s.scalars(select(Connection))).all())
        flows = list((await s.scalars(select(OAuthFlow))).all())
        vaulted = set((await s.scalars(select(VaultSecret.owner_id))).all())
        pending = (
            await s.scalars(select(ConnectSession.id).where(ConnectSession.status == "pending"))
        ).all()
        undelivered = (
            await s.scalars(select(EventDelivery.id).where(EventDelivery.status != "delivered"))
        ).all()
    ours = {c.fivetran_connection_id for c in conns if c.fivetran_connection_id}
    live = {c.fivetran_connection_id for c in conns if c.state != "deleted"}
    remote_ids = {str(x["id"]) for x in remote}
    by_id = {c.id: c for c in conns}
    lost = 0
    for flow in flows:
        if flow.status not in ("exchanged", "completed"):
            continue
        conn = by_id.get(flow.connection_id)
        held_by_fivetran = (
            conn is not None
            and conn.grant_handed_off_at is not None
            and conn.fivetran_connection_id in remote_ids
        )
        if conn is None or not (conn.id in vaulted or held_by_fivetran):
            lost += 1
    per_schema = Counter((x["group_id"], x["schema"]) for x in remote)
    twice = sum(n - 1 for n in Counter(x.event_id for x in receiver.accepted()).values() if n > 1)
    return {
        "tokens_lost": lost,
        "orphans": len(remote_ids - ours) + len(remote_ids & (ours - live)),
        "duplicates": sum(n - 1 for n in per_schema.values() if n > 1),
        "sessions_open": len(pending),
        "events_undelivered": len(undelivered),
        "events_twice": twice,
    }


ONBOARDINGS = int(os.environ.get("PBF_RELIABILITY_ONBOARDINGS", "6"))


async def test_fault_matrix(
    matrix_app: tuple[FastAPI, httpx.AsyncClient, Receiver], worker_for: Any, clock: Any
) -> None:
    app, api, receiver = matrix_app
    rng = random.Random(int(os.environ.get("PBF_RELIABILITY_SEED", "13")))
    outcomes: Counter[str] = Counter()
    token_faults: Counter[str] = Counter()
    server_errors = 0
    for i in range(ONBOARDINGS):
        if TEST_DB == "postgresql" and i == ONBOARDINGS // 2:
            await _kill_db_connections(app)
        end_user = f"eu-{i}"
        for _ in range(5):
            r = await api.put(f"/v1/end-users/{end_user}", json={"name": f"EU {i}"})
            server_errors += r.status_code >= 500 and r.status_code not in (502, 503, 504)
            if r.status_code in (200, 201):
                break
        else:
            outcomes["end_user_failed"] += 1
            continue
        for method, regex in FIVETRAN_CALLS:
            if rng.random() < 0.2:
                await api.post(f"{SIM}/_control/faults", json=_fault(rng, method, regex))
        service = rng.choice(SERVICES)
        if rng.random() < 0.2:
            kind = rng.choice(TOKEN_FAULTS)
            token_faults[kind] += 1
            r = await api.post(
                "/sandbox/oauth/_control/misbehave",
                json={
                    "provider_key": "*",
                    "kind": kind,
                    "count": 1,
                    "delay_seconds": TOKEN_TIMEOUT * 3,
                },
            )
            assert r.status_code == 200, r.text
        body: dict[str, Any] = {"end_user": end_user, "service": service, "return_to": RETURN_TO}
        if service == "google_sheets":
            body["config"] = {"sheet_id": "https://docs.example/s/1"}
        r = await api.post("/v1/connect-sessions", json=body)
        if r.status_code != 201:
            outcomes[f"session_{r.status_code}"] += 1
            server_errors += r.status_code == 500
            continue
        outcome = await _browser_flow(api, r.json()["connect_url"])
        outcomes[outcome] += 1
        server_errors += outcome.endswith("_500")
        await api.delete(f"{SIM}/_control/faults")
    await _recover(app, receiver, worker_for, clock)
    losses = await invariants(app, api, receiver)
    slow = token_faults["slow"]
    figures.add(
        f"fault matrix ({TEST_DB}, 20% Fivetran faults, "
        f"{sum(token_faults.values())} token faults of which {slow} slow)",
        ONBOARDINGS,
        outcomes["connected"],
        **losses,
        **{"5xx": server_errors},
    )
    assert losses == dict.fromkeys(losses, 0), (losses, outcomes)
    assert server_errors == 0, outcomes
    assert outcomes["connected"] > 0, outcomes


async def test_slow_token_endpoint_fails_the_flow_within_the_timeout(
    matrix_app: tuple[FastAPI, httpx.AsyncClient, Receiver],
) -> None:
    """A token endpoint answering after our token timeout (a correct answer, too late):
    the callback gives up after ``oauth.token_timeout_seconds`` — it does not wait for the
    answer — and the end-user comes back with an error; no token is stored."""
    import time as _time

    from app.vault.models import VaultSecret

    app, api, _receiver = matrix_app
    for _ in range(5):  # the matrix's Fivetran timeout is short: a loaded machine may miss it
        if (await api.put("/v1/end-users/slow", json={"name": "Slow"})).status_code in (200, 201):
            break
    r = await api.post(
        "/sandbox/oauth/_control/misbehave",
        json={"provider_key": "hubspot", "kind": "slow", "count": 1, "delay_seconds": 20},
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/v1/connect-sessions",
        json={"end_user": "slow", "service": "hubspot", "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    started = _time.monotonic()
    outcome = await _browser_flow(api, r.json()["connect_url"])
    elapsed = _time.monotonic() - started
    assert outcome == "error", outcome
    assert elapsed < 10, elapsed  # the 20 s answer was not waited for
    async with app.state.sessionmaker() as s:
        assert not (await s.scalars(select(VaultSecret.id))).all()
