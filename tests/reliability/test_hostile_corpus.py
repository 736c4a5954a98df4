"""A corpus of hostile inputs replayed against every operation of the API: in path
parameters, query parameters and JSON bodies. Never a 5xx, and a refused request (4xx)
writes no row anywhere."""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.fixtures.app import TEST_DB
from tests.reliability import figures

#: Read at import: the test fixtures clear PBF_* variables from the environment.
FULL = os.environ.get("PBF_RELIABILITY_FULL") == "1"

HOSTILE: list[Any] = [
    "a\x00b",
    "\udfff",
    "x\ud800y",
    "acme\n",
    "e" * 200,
    "e" * 5000,
    "h" * 70_000,
    "../../etc/passwd",
    "%00",
    "'; drop table end_users; --",
    "<script>alert(1)</script>",
    "\u202eevil",
    "",
    " ",
    2**64,
    -(2**63) - 1,
    1e308,
    True,
    None,
    [],
    {},
]


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


#: Raw JSON texts (too deep for our own encoder to build).
DEEP: list[str] = [_deep(40), _deep(300), _deep(990), "[" * 995 + "]" * 995]
TABLES = (
    "end_users",
    "connections",
    "vault_secrets",
    "connect_sessions",
    "oauth_flows",
    "events",
    "idempotency_keys",
    "audit_records",
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=True).encode()


def _path_value(value: Any) -> str:
    raw = value if isinstance(value, str) else json.dumps(value)
    return quote(raw.encode("utf-8", "surrogatepass"), safe="")


_COUNT_SQL = "select " + ", ".join(f"(select count(*) from {t})" for t in TABLES)


async def _counts(app: FastAPI) -> dict[str, int]:
    async with app.state.sessionmaker() as s:
        row = (await s.execute(text(_COUNT_SQL))).one()
    return dict(zip(TABLES, (int(n) for n in row), strict=True))


def _requests(openapi: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url, httpx kwargs) for every operation × hostile value × position."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for path, item in openapi["paths"].items():
        if path.startswith("/sandbox"):
            continue
        for method, op in item.items():
            params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
            path_params = [p["name"] for p in params if p["in"] == "path"]
            base = path
            for name in path_params:
                base = base.replace("{" + name + "}", "x1")
            for value in HOSTILE:
                if isinstance(value, str) and len(value) > 10_000:
                    continue  # beyond what a client library sends in a URL
                for name in path_params:
                    url = path
                    for other in path_params:
                        url = url.replace(
                            "{" + other + "}", _path_value(value) if other == name else "x1"
                        )
                    out.append((method, url, {}))
                for p in params:
                    if p["in"] == "query":
                        raw = value if isinstance(value, str) else json.dumps(value)
                        q = quote(raw.encode("utf-8", "surrogatepass"), safe="")
                        out.append((method, f"{base}?{p['name']}={q}", {}))
            if "requestBody" in op:
                schema_ref = (
                    op["requestBody"].get("content", {}).get("application/json", {}).get("schema")
                )
                fields = _body_fields(openapi, schema_ref)
                for raw in DEEP:
                    out.append((method, base, {"content": raw.encode()}))
                    for f in fields:
                        text = f'{{"end_user": "acme", "service": "stripe", "{f}": {raw}}}'
                        out.append((method, base, {"content": text.encode()}))
                for value in HOSTILE:
                    out.append((method, base, {"content": _encode(value)}))
                    for f in fields:
                        body = {f: value, "end_user": "acme", "service": "stripe"}
                        out.append((method, base, {"content": _encode(body)}))
                        body = {
                            "end_user": "acme",
                            "service": "stripe",
                            "config": {f: value},
                            "credentials": {"api_key": value},
                        }
                        out.append((method, base, {"content": _encode(body)}))
    return out


def _body_fields(openapi: dict[str, Any], schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return []
    ref = schema.get("$ref") or next(
        (s.get("$ref") for s in schema.get("anyOf", []) if isinstance(s, dict)), None
    )
    if ref:
        schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return sorted(schema.get("properties", {}))


async def test_hostile_corpus_against_every_operation(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    client.headers.update(auth_headers)
    client.headers["Content-Type"] = "application/json"
    r = await client.put("/v1/end-users/acme", json={"name": "Acme"})
    assert r.status_code == 201, r.text
    openapi = app.openapi()
    requests = _requests(openapi)
    # make test replays a deterministic sample; make reliability (PBF_RELIABILITY_FULL=1) all.
    if not FULL:
        requests = requests[::25]
    server_errors: list[tuple[str, str, int]] = []
    written: list[tuple[str, str, dict[str, int]]] = []
    before = await _counts(app)
    for method, url, kwargs in requests:
        r = await client.request(method.upper(), url, **kwargs)
        if r.status_code >= 500:
            server_errors.append((method, url[:120], r.status_code))
        if 400 <= r.status_code < 500:
            after = await _counts(app)
            if after != before:
                diff = {k: after[k] - before[k] for k in after if after[k] != before[k]}
                written.append((method, url[:120], diff))
            before = after
        else:
            before = await _counts(app)
    figures.add(
        f"hostile corpus ({TEST_DB}, every operation)",
        len(requests),
        len(requests) - len(server_errors),
        **{"5xx": len(server_errors), "rows_by_refused": len(written)},
    )
    assert not server_errors, server_errors[:20]
    assert not written, written[:20]
    assert re.search  # the corpus ran
