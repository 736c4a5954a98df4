"""Findings of the outside probe on input handling: each test does the attack first.

A refused request writes nothing, and nothing a client can send answers 500 or takes a list
down for everyone.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.fixtures.onboarding import Simulator, problem

PG_SQLITE_TABLES = ("connections", "end_users", "vault_secrets")


async def _snapshot(count_rows: Callable[..., Awaitable[int]]) -> dict[str, int]:
    return {t: await count_rows(t) for t in PG_SQLITE_TABLES}


@pytest.fixture
async def acme(api: httpx.AsyncClient) -> httpx.AsyncClient:
    r = await api.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    return api


def _raw(body: str) -> dict[str, object]:
    return {"content": body.encode(), "headers": {"Content-Type": "application/json"}}


async def test_lone_surrogate_in_config_is_refused_and_lists_survive(
    acme: httpx.AsyncClient, count_rows: Callable[..., Awaitable[int]]
) -> None:
    before = await _snapshot(count_rows)
    body = (
        '{"end_user": "acme", "service": "postgres", "config": {"host": "db.example.com",'
        ' "port": 5432, "database": "d\\udfff", "user": "u"},'
        ' "credentials": {"password": "p"}}'
    )
    r = await acme.post("/v1/connections", **_raw(body))  # type: ignore[arg-type]
    problem(r, 422, "invalid_input")
    assert await _snapshot(count_rows) == before
    r = await acme.get("/v1/connections")
    assert r.status_code == 200, r.text


async def test_unserialisable_row_never_takes_the_list_down(
    acme: httpx.AsyncClient, app: object
) -> None:
    """Defence in depth: a row written before validation existed (lone surrogate stored)."""
    from sqlalchemy import update

    from app.connections.models import Connection

    r = await acme.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_x"}},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await acme.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_y"}},
    )
    assert r.status_code == 201, r.text
    async with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        await session.execute(
            update(Connection).where(Connection.id == cid).values(config={"note": "x\ud800"})
        )
        await session.commit()
    r = await acme.get("/v1/connections")
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 2
    r = await acme.get(f"/v1/connections/{cid}")
    assert r.status_code == 200, r.text
    assert "\ud800" not in r.text


HOSTILE_STRINGS = [
    "a\x00b",
    "a\udfffb",
    "a\n",
    "x" * 5000,
]


@pytest.mark.parametrize("value", HOSTILE_STRINGS, ids=["nul", "surrogate", "newline", "long"])
async def test_hostile_external_ids_are_refused(
    api: httpx.AsyncClient, count_rows: Callable[..., Awaitable[int]], value: str
) -> None:
    before = await _snapshot(count_rows)
    from urllib.parse import quote

    path = "/v1/end-users/" + quote(value.encode("utf-8", "surrogatepass"), safe="")
    r = await api.put(path, json={"name": "x"})
    assert r.status_code in (400, 404, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _snapshot(count_rows) == before
    for method in ("GET", "DELETE"):
        r = await api.request(method, path)
        assert r.status_code in (400, 404, 422), (method, r.status_code, r.text)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/connections/con_%00",
        "/v1/connections?end_user=a%00b",
        "/v1/end-users?cursor=%00",
        "/v1/events?cursor=%00",
        "/v1/sources/st%00ripe",
    ],
)
async def test_nul_in_ids_filters_and_cursors_is_a_problem(
    api: httpx.AsyncClient, path: str
) -> None:
    r = await api.get(path)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


CRAFTED_CURSORS = {
    "deep": _cursor("[" * 300 + "]" * 300),
    "huge_int": _cursor(json.dumps({"seq": 2**64, "after": 2**64})),
    "surrogate": _cursor('{"seq": "\\udfff", "after": "\\udfff"}'),
    "surrogate_raw": base64.urlsafe_b64encode(b'{"after": "\xed\xbf\xbf"}').decode(),
    "nul": _cursor('{"after": "a\\u0000"}'),
    "negative": _cursor(json.dumps({"seq": -(2**70)})),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_CURSORS))
@pytest.mark.parametrize("path", ["/v1/connections", "/v1/end-users", "/v1/events", "/v1/sources"])
async def test_crafted_cursors_are_400(api: httpx.AsyncClient, path: str, name: str) -> None:
    r = await api.get(path, params={"cursor": CRAFTED_CURSORS[name]})
    problem(r, 400, "invalid_cursor")


@pytest.mark.parametrize("depth", [64, 300, 990])
async def test_deep_json_is_refused_and_writes_nothing(
    api: httpx.AsyncClient, count_rows: Callable[..., Awaitable[int]], depth: int
) -> None:
    before = await _snapshot(count_rows)
    nested = '{"a":' * depth + "1" + "}" * depth
    body = '{"name": "x", "destination": {"service": "snowflake", "config": ' + nested + "}}"
    r = await api.put("/v1/end-users/deep", **_raw(body))  # type: ignore[arg-type]
    problem(r, 422)
    assert await _snapshot(count_rows) == before
    r = await api.post(
        "/v1/connections",
        **_raw('{"end_user": "deep", "service": "stripe", "config": ' + nested + "}"),  # type: ignore[arg-type]
    )
    assert r.status_code in (404, 422), r.text
    assert await _snapshot(count_rows) == before


async def test_config_values_have_a_length_cap(
    acme: httpx.AsyncClient, sim: Simulator, count_rows: Callable[..., Awaitable[int]]
) -> None:
    before = await _snapshot(count_rows)
    r = await acme.post(
        "/v1/connections",
        json={
            "end_user": "acme",
            "service": "postgres",
            "config": {"host": "h" * 990_000, "port": 5432, "database": "d", "user": "u"},
            "credentials": {"password": "p"},
        },
    )
    problem(r, 422, "invalid_input")
    assert await _snapshot(count_rows) == before
    assert not [
        e
        for e in await sim.requests()
        if e.get("method") == "POST" and str(e.get("path")).startswith("/v1/connections")
    ]


async def test_long_external_id_can_be_reonboarded_after_offboarding(
    api: httpx.AsyncClient,
) -> None:
    external_id = "e" * 200
    for _ in range(2):
        r = await api.put(f"/v1/end-users/{external_id}", json={"name": "x"})
        assert r.status_code == 201, r.text
        r = await api.delete(f"/v1/end-users/{external_id}")
        assert r.status_code in (202, 204), r.text
        for _ in range(20):
            r = await api.get(f"/v1/end-users/{external_id}")
            if r.status_code == 404:
                break


async def test_chunked_body_over_the_cap_is_413(api: httpx.AsyncClient, app: object) -> None:
    cap = app.state.settings.api.max_body_bytes  # type: ignore[attr-defined]

    async def chunks():  # type: ignore[no-untyped-def]
        payload = b'{"name": "' + b"x" * (cap + 10) + b'"}'
        for i in range(0, len(payload), 4096):
            yield payload[i : i + 4096]

    r = await api.put(
        "/v1/end-users/chunky", content=chunks(), headers={"Content-Type": "application/json"}
    )
    problem(r, 413, "payload_too_large")


async def test_trailing_slash_redirect_ignores_the_host_header(api: httpx.AsyncClient) -> None:
    r = await api.get("/v1/connections/", headers={"Host": "evil.example"})
    location = r.headers.get("location", "")
    assert "evil.example" not in location, (r.status_code, location)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Acme\x00Corp"},
        {"name": "Acme", "destination": {"service": "snowflake", "config": {"host": "h\x00"}}},
    ],
    ids=["name", "destination_config"],
)
async def test_nul_in_names_is_refused_and_writes_nothing(
    api: httpx.AsyncClient, count_rows: Callable[..., Awaitable[int]], body: dict[str, object]
) -> None:
    before = await _snapshot(count_rows)
    r = await api.put("/v1/end-users/named", json=body)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _snapshot(count_rows) == before
