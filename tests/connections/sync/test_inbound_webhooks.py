"""Inbound Fivetran webhooks: signature attacks leave nothing behind; duplicates are
idempotent; events map onto the connection (rows seeded directly, no Fivetran involved)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db import new_id, utcnow
from app.events.models import Event, FivetranWebhookReceipt
from app.events.signing import SANDBOX_WEBHOOK_SECRET

URL = "/v1/webhooks/fivetran"


def _body(event: str, connector_id: str = "ft_conn_1", **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "event": event,
        "created": extra.pop("created", "2026-11-26T01:00:00.000Z"),
        "connector_type": "stripe",
        "connector_id": connector_id,
        "connector_name": "stripe",
        "destination_group_id": "grp_1",
        "data": extra.pop("data", {}),
    }
    payload.update(extra)
    return json.dumps(payload, separators=(",", ":")).encode()


def _sig(body: bytes, secret: str = SANDBOX_WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _post(client, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Fivetran-Signature-256"] = signature
    return await client.post(URL, content=body, headers=headers)


async def _counts(app) -> tuple[int, int]:
    async with app.state.sessionmaker() as session:
        receipts = await session.scalar(select(func.count()).select_from(FivetranWebhookReceipt))
        events = await session.scalar(select(func.count()).select_from(Event))
    return int(receipts or 0), int(events or 0)


@pytest.fixture
async def seeded(events_app) -> dict[str, str]:
    """An end-user with one connected connection whose Fivetran id is ft_conn_1."""
    from app.connections.models import Connection
    from app.end_users.models import EndUser

    now = utcnow()
    async with events_app.state.sessionmaker() as session, session.begin():
        eu = EndUser(
            id=new_id("eu"),
            external_id="acme",
            slug="acme",
            group_strategy="per_end_user",
            fivetran_group_id="grp_1",
            created_at=now,
            updated_at=now,
        )
        session.add(eu)
        await session.flush()
        conn = Connection(
            id=new_id("con"),
            end_user_id=eu.id,
            service="stripe",
            slot=1,
            auth_method="credentials",
            state="connected",
            schema_name="stripe",
            group_id="grp_1",
            fivetran_connection_id="ft_conn_1",
            setup_state="connected",
            sync_state="scheduled",
            paused=False,
            created_at=now,
            updated_at=now,
        )
        session.add(conn)
    return {"connection_id": conn.id}


async def _connection(app, connection_id: str) -> Any:
    from app.connections.models import Connection

    async with app.state.sessionmaker() as session:
        return await session.get(Connection, connection_id)


async def test_good_signature_lower_and_uppercase_accepted(events_app, events_client, seeded):
    body = _body("sync_start", sync_id="s1")
    r = await _post(events_client, body, _sig(body))
    assert r.status_code == 200 and r.json() == {"status": "accepted", "outcome": "applied"}
    body2 = _body("sync_end", sync_id="s1", data={"status": "SUCCESSFUL"})
    r = await _post(events_client, body2, _sig(body2).upper())  # Fivetran sends uppercase
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    conn = await _connection(events_app, seeded["connection_id"])
    assert conn.last_sync_succeeded_at == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
    assert conn.sync_state == "scheduled"


@pytest.mark.parametrize(
    "case", ["missing", "empty", "wrong_secret", "tampered_body", "prefixed", "truncated"]
)
async def test_bad_signatures_are_401_and_write_nothing(events_app, events_client, seeded, case):
    body = _body("connection_failure", data={"reason": "revoked"})
    signature: str | None = {
        "missing": None,
        "empty": "",
        "wrong_secret": _sig(body, "not-the-secret"),
        "tampered_body": _sig(body),
        "prefixed": "sha256=" + _sig(body),
        "truncated": _sig(body)[:-2],
    }[case]
    sent = body.replace(b"revoked", b"REVOKED") if case == "tampered_body" else body
    r = await _post(events_client, sent, signature)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] in ("missing_signature", "invalid_signature")
    assert await _counts(events_app) == (0, 0)
    conn = await _connection(events_app, seeded["connection_id"])
    assert conn.state == "connected" and conn.setup_state == "connected"


async def test_signed_garbage_is_400_and_writes_nothing(events_app, events_client) -> None:
    for body in (b"not json", b"[1,2]", b'{"no_event":1}'):
        r = await _post(events_client, body, _sig(body))
        assert r.status_code == 400, r.text
    assert await _counts(events_app) == (0, 0)


async def test_duplicates_are_idempotent(events_app, events_client, seeded, worker_for) -> None:
    body = _body("sync_end", sync_id="s9", data={"status": "FAILED", "reason": "boom"})
    first = await _post(events_client, body, _sig(body))
    assert first.json()["status"] == "accepted"
    for _ in range(3):
        r = await _post(events_client, body, _sig(body))
        assert r.status_code == 200 and r.json()["status"] == "duplicate"
    # A redelivery with another 'created' but the same sync is the same event.
    again = _body(
        "sync_end",
        sync_id="s9",
        data={"status": "FAILED", "reason": "boom"},
        created="2026-11-26T01:05:00.000Z",
    )
    r = await _post(events_client, again, _sig(again))
    assert r.json()["status"] == "duplicate"
    assert await _counts(events_app) == (1, 1)
    conn = await _connection(events_app, seeded["connection_id"])
    assert conn.last_sync_failed_at == datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


async def test_failure_and_recovery_move_the_state(events_app, events_client, seeded) -> None:
    cid = seeded["connection_id"]
    body = _body("connection_failure", data={"reason": "token revoked"})
    assert (await _post(events_client, body, _sig(body))).json()["outcome"] == "applied"
    conn = await _connection(events_app, cid)
    assert (conn.state, conn.setup_state) == ("broken", "broken")
    body = _body("connection_successful", created="2026-11-26T02:00:00.000Z")
    assert (await _post(events_client, body, _sig(body))).json()["outcome"] == "applied"
    assert (await _connection(events_app, cid)).state == "connected"
    body = _body("pause_connector", created="2026-11-26T03:00:00.000Z")
    await _post(events_client, body, _sig(body))
    conn = await _connection(events_app, cid)
    assert conn.state == "paused" and conn.paused
    body = _body("resume_connector", created="2026-11-26T04:00:00.000Z")
    await _post(events_client, body, _sig(body))
    conn = await _connection(events_app, cid)
    assert conn.state == "connected" and not conn.paused
    body = _body("delete_connector", created="2026-11-26T05:00:00.000Z")
    await _post(events_client, body, _sig(body))
    assert (await _connection(events_app, cid)).state == "deleted"
    async with events_app.state.sessionmaker() as session:
        kinds = list((await session.scalars(select(Event.kind).order_by(Event.seq))).all())
    assert kinds == [
        "connection.broken",
        "connection.connected",
        "connection.paused",
        "connection.resumed",
        "connection.deleted",
    ]


async def test_late_webhooks_never_move_state_backwards(events_app, events_client, seeded):
    cid = seeded["connection_id"]
    end = _body(
        "sync_end", sync_id="s2", data={"status": "SUCCESSFUL"}, created="2026-11-26T01:10:00.000Z"
    )
    start = _body("sync_start", sync_id="s2", created="2026-11-26T01:00:00.000Z")
    older = _body(
        "sync_end", sync_id="s1", data={"status": "SUCCESSFUL"}, created="2026-11-26T00:10:00.000Z"
    )
    for body in (end, start, older):  # arrival order differs from emission order
        assert (await _post(events_client, body, _sig(body))).status_code == 200
    conn = await _connection(events_app, cid)
    assert conn.sync_state == "scheduled"
    assert conn.last_sync_succeeded_at == datetime(2026, 11, 26, 1, 10, tzinfo=UTC)
    async with events_app.state.sessionmaker() as session:
        kinds = list((await session.scalars(select(Event.kind))).all())
    assert kinds == ["connection.sync_succeeded"]


async def test_unknown_connection_is_acknowledged(events_app, events_client) -> None:
    body = _body(
        "sync_end", connector_id="_connection_1", sync_id="x", data={"status": "SUCCESSFUL"}
    )
    r = await _post(events_client, body, _sig(body))
    assert r.status_code == 200 and r.json()["outcome"] == "unknown_connection"
    assert await _counts(events_app) == (1, 0)


async def test_configured_secret_replaces_the_sandbox_default(events_settings, receiver) -> None:
    import httpx
    from pydantic import SecretStr

    from app.main import create_app

    settings = events_settings()
    settings = settings.model_copy(
        update={
            "fivetran": settings.fivetran.model_copy(
                update={"webhook_secret": SecretStr("configured-1")}
            )
        }
    )
    app = create_app(settings, outbound_transport=httpx.ASGITransport(receiver))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = _body("sync_start", sync_id="z")
            assert (await _post(c, body, _sig(body))).status_code == 401
            assert (await _post(c, body, _sig(body, "configured-1"))).status_code == 200


async def test_concurrent_duplicates_apply_once(events_app, events_client, seeded) -> None:
    import asyncio

    body = _body("sync_end", sync_id="race", data={"status": "SUCCESSFUL"})
    results = await asyncio.gather(*(_post(events_client, body, _sig(body)) for _ in range(5)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sorted(r.json()["status"] for r in results) == ["accepted"] + ["duplicate"] * 4
    assert await _counts(events_app) == (1, 1)


async def test_resume_webhook_never_turns_a_failed_setup_into_connected(
    events_app, events_client, seeded
) -> None:
    """§5: a connection whose setup tests failed, paused and resumed at Fivetran, is
    ``setup_failed`` again — not ``connected``."""
    from app.connections import states
    from app.connections.models import Connection

    cid = seeded["connection_id"]
    async with events_app.state.sessionmaker() as session, session.begin():
        conn = await session.get(Connection, cid)
        assert conn is not None
        conn.setup_state = "incomplete"
        await states.transition(session, conn, "setup_failed", reason="setup_tests_failed")
    body = _body("pause_connector", created="2026-11-26T03:00:00.000Z")
    assert (await _post(events_client, body, _sig(body))).json()["outcome"] == "applied"
    body = _body("resume_connector", created="2026-11-26T04:00:00.000Z")
    assert (await _post(events_client, body, _sig(body))).json()["outcome"] == "applied"
    conn = await _connection(events_app, cid)
    assert conn.state == "setup_failed" and not conn.paused
    async with events_app.state.sessionmaker() as session:
        kinds = list((await session.scalars(select(Event.kind).order_by(Event.seq))).all())
    assert "connection.resumed" not in kinds and "connection.connected" not in kinds, kinds
