"""The audit trail: who did what to which end-user/connection/key, when, from where;
append-only, admin-only, cursor-paginated, exported as JSON lines, purged by retention."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from app.db import utcnow


async def _all(api: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = await api.get(
            "/v1/audit", params={**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        )
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def test_writes_are_audited_with_actor_and_client_ip(
    api: httpx.AsyncClient, make_api_key: Callable[..., Awaitable[str]]
) -> None:
    assert (await api.put("/v1/end-users/acme", json={"name": "Acme"})).status_code == 201
    assert (await api.put("/v1/end-users/acme", json={"name": "Acme Inc"})).status_code == 200
    r = await api.post(
        "/v1/connections",
        json={"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_audit"}},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await api.patch(f"/v1/connections/{cid}", json={"paused": True})).status_code == 200
    assert (await api.delete(f"/v1/connections/{cid}")).status_code == 204
    assert (await api.delete("/v1/end-users/acme")).status_code in (202, 204)
    items = await _all(api)
    actions = [i["action"] for i in items if i["actor"]["type"] == "api_key"]
    assert actions == [
        "end_user.create",
        "end_user.update",
        "connection.create",
        "connection.update",
        "connection.delete",
        "end_user.delete",
    ]
    conn_items = [i for i in items if i["target"]["id"] == cid]
    assert {i["actor"]["client_ip"] for i in conn_items} == {"127.0.0.1"}
    assert conn_items[0]["end_user"] == "acme"
    assert "sk_audit" not in json.dumps(items)  # never a secret
    only = await _all(api, target_id=cid)
    assert [i["action"] for i in only] == [
        "connection.create",
        "connection.update",
        "connection.delete",
    ]


async def test_audit_is_admin_only_and_append_only(
    client: httpx.AsyncClient, make_api_key: Callable[..., Awaitable[str]]
) -> None:
    reader = await make_api_key(["read", "write"])
    r = await client.get("/v1/audit", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403, r.text
    admin = await make_api_key(["admin"])
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        r = await client.request(method, "/v1/audit", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 405, (method, r.status_code)


async def test_key_creation_and_revocation_are_audited(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    from app.callers.service import create_api_key, revoke_api_key

    async with app.state.sessionmaker() as s, s.begin():
        row, _ = await create_api_key(s, name="ops", scopes=["read"])
    async with app.state.sessionmaker() as s, s.begin():
        await revoke_api_key(s, row.id)
    items = [i for i in await _all(api) if i["target"]["id"] == row.id]
    assert [i["action"] for i in items] == ["api_key.create", "api_key.revoke"]
    assert items[0]["details"]["name"] == "ops"


async def test_retention_purge_by_the_worker(
    app: FastAPI, api: httpx.AsyncClient, worker_for: Any, clock: Any
) -> None:
    from sqlalchemy import update

    from app.audit.models import AuditRecord

    assert (await api.put("/v1/end-users/old", json={})).status_code == 201
    days = app.state.settings.audit.retention_days
    async with app.state.sessionmaker() as s, s.begin():
        await s.execute(
            update(AuditRecord)
            .where(AuditRecord.end_user_external_id == "old")
            .values(at=utcnow() - timedelta(days=days + 1))
        )
    assert (await api.put("/v1/end-users/new", json={})).status_code == 201
    await worker_for(app).prune_once()
    after = await _all(api)
    assert [i["end_user"] for i in after if i["action"] == "end_user.create"] == ["new"]


def test_cli_export_is_json_lines(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import cli

    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    runner = CliRunner()
    made = runner.invoke(cli, ["api-keys", "create", "--name", "exporter", "--scope", "admin"])
    assert made.exit_code == 0, made.output
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(cli, ["audit", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[-1]["action"] == "api_key.create"
    assert lines[-1]["details"]["name"] == "exporter"
    assert lines[-1]["actor"]["type"] == "cli"
