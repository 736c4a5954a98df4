"""Bad input on every endpoint: a clear problem-details response and nothing written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.onboarding import RETURN_TO, problem

TABLES = ("end_users", "connections", "connection_transitions", "vault_secrets", "events")


@pytest.fixture
async def acme(api: httpx.AsyncClient) -> httpx.AsyncClient:
    assert (await api.put("/v1/end-users/acme", json={"name": "Acme"})).status_code == 201
    return api


@pytest.fixture
def snapshot(count_rows: Callable[..., Awaitable[int]]) -> Callable[[], Awaitable[dict[str, int]]]:
    async def take() -> dict[str, int]:
        return {t: await count_rows(t) for t in TABLES}

    return take


CREATE_CASES: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("unknown service", {"service": "no_such_thing"}, 404, "source_not_found", None),
    # A Connect Card service takes no secrets: they are entered in Fivetran's card.
    (
        "connect-card-only service with credentials",
        {"service": "mailchimp"},
        422,
        "unknown_config_field",
        None,
    ),
    ("oauth-only service", {"service": "google_ads"}, 422, "oauth_source", "service"),
    (
        "missing required field",
        {
            "service": "postgres",
            "config": {"host": "h", "port": 5432, "database": "d"},
            "credentials": {"password": "p"},
        },
        422,
        "missing_config_field",
        "config.user",
    ),
    (
        "wrong type",
        {
            "service": "postgres",
            "config": {"host": "h", "port": "5432", "database": "d", "user": "u"},
            "credentials": {"password": "p"},
        },
        422,
        "invalid_config",
        "config.port",
    ),
    (
        "bad enum",
        {
            "service": "stripe",
            "config": {"historical_sync_time_frame": "SOMETIMES"},
            "credentials": {"api_key": "k"},
        },
        422,
        "invalid_config",
        "config.historical_sync_time_frame",
    ),
    (
        "unknown field",
        {"service": "stripe", "config": {"shoe_size": 9}, "credentials": {"api_key": "k"}},
        422,
        "unknown_config_field",
        "config.shoe_size",
    ),
    (
        "platform field",
        {"service": "stripe", "config": {"schema": "mine"}, "credentials": {"api_key": "k"}},
        422,
        "unknown_config_field",
        "config.schema",
    ),
    (
        "unknown credential",
        {"service": "stripe", "credentials": {"api_key": "k", "password": "p"}},
        422,
        "unknown_config_field",
        "credentials.password",
    ),
    ("unknown end-user", {"end_user": "nobody"}, 404, "end_user_not_found", None),
]


@pytest.mark.parametrize(
    ("case", "override", "status", "code", "field"), CREATE_CASES, ids=[c[0] for c in CREATE_CASES]
)
async def test_create_connection_rejects(
    acme: httpx.AsyncClient,
    snapshot: Callable[[], Awaitable[dict[str, int]]],
    case: str,
    override: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    before = await snapshot()
    body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk"}}
    body.update(override)
    r = await acme.post("/v1/connections", json=body)
    out = problem(r, status, code)
    if field is not None:
        assert out.get("field") == field, out
    assert "sk" not in str(out.get("detail"))
    assert await snapshot() == before


async def test_schema_validation_errors_are_problems(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    before = await snapshot()
    problem(await acme.post("/v1/connections", json={"service": "stripe"}), 422, "validation_error")
    problem(
        await acme.post(
            "/v1/connections", json={"end_user": "acme", "service": "stripe", "auth": {}}
        ),
        422,
        "validation_error",
    )
    problem(
        await acme.post(
            "/v1/connections", content=b"{not json", headers={"Content-Type": "application/json"}
        ),
        422,
    )
    problem(await acme.put("/v1/end-users/acme", json={"name": "x" * 201}), 422)
    problem(await acme.put("/v1/end-users/bad%20id", json={}), 422, "invalid_external_id")
    problem(await acme.get("/v1/end-users", params={"limit": 0}), 422)
    problem(await acme.get("/v1/end-users", params={"cursor": "!!!"}), 400, "invalid_cursor")
    assert await snapshot() == before


async def test_oversize_body_is_refused(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    before = await snapshot()
    big = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "k" * 2_000_000}}
    r = await acme.post("/v1/connections", json=big)
    problem(r, 413)
    assert await snapshot() == before


async def test_foreign_end_user_is_not_found(
    acme: httpx.AsyncClient,
    make_api_key: Callable[..., Awaitable[str]],
    snapshot: Callable[[], Awaitable[dict[str, int]]],
) -> None:
    r = await acme.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk"}},
    )
    assert r.status_code == 201
    cid = r.json()["id"]
    key = await make_api_key(["read", "write"], end_user_prefix="partner-")
    other = {"Authorization": f"Bearer {key}"}
    before = await snapshot()
    for method, path, body in [
        ("GET", "/v1/end-users/acme", None),
        ("PUT", "/v1/end-users/acme", {"name": "stolen"}),
        ("DELETE", "/v1/end-users/acme", None),
        ("GET", "/v1/end-users/acme/ssh-public-key", None),
        ("GET", f"/v1/connections/{cid}", None),
        ("PATCH", f"/v1/connections/{cid}", {"paused": True}),
        ("DELETE", f"/v1/connections/{cid}", None),
        ("POST", f"/v1/connections/{cid}/sync", {}),
        ("POST", f"/v1/connections/{cid}/resync", {}),
        ("POST", f"/v1/connections/{cid}/test", {}),
        ("GET", f"/v1/connections/{cid}/schema", None),
        ("PATCH", f"/v1/connections/{cid}/schema", {}),
        ("POST", f"/v1/connections/{cid}/approve-fingerprint", {}),
        ("POST", f"/v1/connections/{cid}/reauthorize", {"return_to": RETURN_TO}),
        ("GET", "/v1/connections?end_user=acme", None),
        (
            "POST",
            "/v1/connections",
            {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "x"}},
        ),
        ("POST", "/v1/payloads/preview", {"end_user": "acme", "service": "stripe"}),
        (
            "POST",
            "/v1/connect-sessions",
            {"end_user": "acme", "service": "salesforce", "return_to": RETURN_TO},
        ),
    ]:
        r = await acme.request(method, path, json=body, headers=other)
        out = problem(r, 404)
        assert out["code"] in ("end_user_not_found", "connection_not_found"), (path, out)
    # A restricted key sees nothing of others in lists either.
    r = await acme.get("/v1/end-users", headers=other)
    assert r.json()["items"] == []
    r = await acme.get("/v1/connections", headers=other)
    assert r.json()["items"] == []
    assert await snapshot() == before
    r = await acme.get(f"/v1/connections/{cid}")
    assert r.json()["state"] == "connected" and r.json()["paused"] is False


async def test_idempotency_key_reuse_with_other_body_is_409(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    headers = {"Idempotency-Key": "k-1"}
    body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "one"}}
    first = await acme.post("/v1/connections", json=body, headers=headers)
    assert first.status_code == 201
    before = await snapshot()
    other = {**body, "credentials": {"api_key": "two"}}
    problem(
        await acme.post("/v1/connections", json=other, headers=headers),
        409,
        "idempotency_key_reused",
    )
    again = await acme.post("/v1/connections", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert await snapshot() == before


async def test_connect_session_bad_return_to_and_expired(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    before = await snapshot()
    r = await acme.post(
        "/v1/connect-sessions",
        json={
            "end_user": "acme",
            "service": "salesforce",
            "return_to": "https://evil.example.net/steal",
        },
    )
    out = problem(r, 422)
    assert out.get("field") == "return_to", out
    r = await acme.post(
        "/v1/connect-sessions",
        json={"end_user": "acme", "service": "stripe", "return_to": RETURN_TO},
    )
    assert r.status_code in (404, 422), r.text
    r = await acme.post(
        "/v1/connect-sessions",
        json={
            "end_user": "acme",
            "service": "salesforce",
            "return_to": RETURN_TO,
            "config": {"hostname": "evil.example.net"},
        },
    )
    out = problem(r, 422)
    assert str(out.get("field", "")).startswith("config"), out
    assert await snapshot() == before


async def test_end_user_lifecycle_and_pagination(acme: httpx.AsyncClient) -> None:
    r = await acme.put("/v1/end-users/acme", json={"name": "Acme 2"})
    assert r.status_code == 200 and r.json()["name"] == "Acme 2"
    group = r.json()["fivetran_group_id"]
    for i in range(3):
        assert (await acme.put(f"/v1/end-users/b-{i}", json={})).status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await acme.get("/v1/end-users", params=params)).json()
        seen += [i["external_id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["acme", "b-0", "b-1", "b-2"]
    r = await acme.get("/v1/end-users/acme")
    assert r.json()["fivetran_group_id"] == group


async def test_expired_connect_session_creates_nothing(
    app: Any, acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.connect.models import ConnectSession
    from app.db import utcnow

    r = await acme.post(
        "/v1/connect-sessions",
        json={"end_user": "acme", "service": "salesforce", "return_to": RETURN_TO},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    # Time passes: the session's start token is past its expiry.
    past = utcnow() - timedelta(seconds=1)
    async with app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(ConnectSession)
            .where(ConnectSession.id == created["id"])
            .values(token_expires_at=past, expires_at=past)
        )
    before = await snapshot()
    r = await acme.post(created["connect_url"], headers={"Origin": "http://127.0.0.1:3000"})
    assert r.status_code in (400, 404, 410), (r.status_code, r.text[:200])
    assert "location" not in r.headers or "/sandbox/oauth/" not in r.headers["location"]
    status = (await acme.get(f"/v1/connect-sessions/{created['id']}")).json()
    assert status["status"] == "expired", status
    assert await snapshot() == before
    # The reserved connection never left "pending" and nothing exists at Fivetran.
    r = await acme.get("/v1/connections", params={"end_user": "acme"})
    assert [c["state"] for c in r.json()["items"]] == ["pending"]
    assert r.json()["items"][0]["fivetran_connection_id"] is None


async def test_unknown_connection_everywhere(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    before = await snapshot()
    cid = "con_doesnotexist"
    for method, path, body in [
        ("GET", f"/v1/connections/{cid}", None),
        ("PATCH", f"/v1/connections/{cid}", {"paused": True}),
        ("DELETE", f"/v1/connections/{cid}", None),
        ("POST", f"/v1/connections/{cid}/sync", {"force": False}),
        ("POST", f"/v1/connections/{cid}/resync", {}),
        ("POST", f"/v1/connections/{cid}/test", {}),
        ("GET", f"/v1/connections/{cid}/schema", None),
        ("PATCH", f"/v1/connections/{cid}/schema", {}),
        ("POST", f"/v1/connections/{cid}/approve-fingerprint", {}),
        ("POST", f"/v1/connections/{cid}/approve-certificate", {}),
        ("POST", f"/v1/connections/{cid}/reauthorize", {"return_to": RETURN_TO}),
    ]:
        problem(await acme.request(method, path, json=body), 404, "connection_not_found")
    for method, path, body in [
        ("GET", "/v1/end-users/nobody", None),
        ("DELETE", "/v1/end-users/nobody", None),
        ("GET", "/v1/end-users/nobody/ssh-public-key", None),
        ("GET", "/v1/connections?end_user=nobody", None),
        ("POST", "/v1/payloads/preview", {"end_user": "nobody", "service": "stripe"}),
    ]:
        problem(await acme.request(method, path, json=body), 404, "end_user_not_found")
    problem(
        await acme.post(
            "/v1/payloads/preview",
            json={"end_user": "acme", "service": "stripe", "config": {"api_key": 7}},
        ),
        422,
        "invalid_config",
    )
    assert await snapshot() == before


async def test_bad_bodies_on_connection_actions(
    acme: httpx.AsyncClient, snapshot: Callable[[], Awaitable[dict[str, int]]]
) -> None:
    r = await acme.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk"}},
    )
    cid = r.json()["id"]
    before = await snapshot()
    for method, path, body in [
        ("POST", f"/v1/connections/{cid}/sync", {"force": "yes please"}),
        ("POST", f"/v1/connections/{cid}/resync", {"scope": ["tickets"]}),
        ("POST", f"/v1/connections/{cid}/test", {"trust_everything": True}),
        ("PATCH", f"/v1/connections/{cid}/schema", {"schemas": {"s": {"tables": []}}}),
        ("PATCH", f"/v1/connections/{cid}", {"paused": "maybe"}),
        ("POST", f"/v1/connections/{cid}/reauthorize", {}),
    ]:
        problem(await acme.request(method, path, json=body), 422)
    # Credentials connections are not re-authorized through OAuth.
    problem(
        await acme.post(f"/v1/connections/{cid}/reauthorize", json={"return_to": RETURN_TO}),
        422,
        "not_an_oauth_connection",
    )
    # Nothing awaits approval on a healthy connection.
    problem(
        await acme.post(f"/v1/connections/{cid}/approve-fingerprint", json={}),
        409,
        "no_fingerprint_pending",
    )
    problem(
        await acme.post(f"/v1/connections/{cid}/approve-certificate", json={}),
        409,
        "no_certificate_pending",
    )
    assert await snapshot() == before
    # An explicitly given certificate is approved at Fivetran and the tests re-run.
    r = await acme.post(
        f"/v1/connections/{cid}/approve-certificate",
        json={"hash": "c2hhMjU2LWhhc2g", "encoded_cert": "TUlJQ2VydA=="},
    )
    assert r.status_code == 200 and r.json()["state"] == "connected", r.text
