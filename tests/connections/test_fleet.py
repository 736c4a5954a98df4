"""The fleet operation: the platform schema policy brought onto existing connections at
Fivetran (the in-process simulator), per-connection results, filters, resume, dry run,
failures, the audit record, the CLI and its report — and 429s that never escape."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from app.config import SchemaPolicy
from app.connections.fleet import (
    FAILED,
    UNCHANGED,
    UPDATED,
    WOULD_UPDATE,
    ConnectionResult,
    FleetSelection,
    apply_schema_policy,
)
from app.fivetran.budget import CombinedBudget, LocalTokenBucket, RateBucket
from tests.fixtures.onboarding import CONTROL, Simulator

NEW_POLICY = SchemaPolicy(
    schema_change_handling="BLOCK_ALL",
    blocked_tables=["*.tickets"],
    hashed_columns=["stripe.opportunities.email"],
)
USERS = ("acme", "beta", "gamma")


async def _fleet(
    make_app_client: Callable[..., Any], **overrides: Any
) -> tuple[FastAPI, httpx.AsyncClient, dict[str, str]]:
    """Three end-users with one stripe connection each, created under the default policy;
    returns connection id → Fivetran id."""
    app, api = await make_app_client(**overrides)
    ids: dict[str, str] = {}
    for user in USERS:
        assert (await api.put(f"/v1/end-users/{user}", json={})).status_code == 201
        r = await api.post(
            "/v1/connections",
            json={"end_user": user, "service": "stripe", "credentials": {"api_key": "sk_l"}},
        )
        assert r.status_code == 201 and r.json()["state"] == "connected", r.text
        ids[r.json()["id"]] = r.json()["fivetran_connection_id"]
    return app, api, ids


async def _remote_schema(sim: Simulator, fid: str) -> dict[str, Any]:
    r = await sim.get(f"/v1/connections/{fid}/schemas")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()["data"]
    return data


async def _patches(sim: Simulator) -> int:
    return sum(
        1 for x in await sim.requests() if x["method"] == "PATCH" and x["path"].endswith("/schemas")
    )


async def _run(app: FastAPI, policy: SchemaPolicy = NEW_POLICY, **kw: Any) -> tuple[Any, list]:
    results: list[ConnectionResult] = []
    summary = await apply_schema_policy(
        app.state.sessionmaker, app.state.fivetran, policy, on_result=results.append, **kw
    )
    return summary, results


async def test_policy_reaches_every_connection_once_and_a_rerun_changes_nothing(
    make_app_client: Callable[..., Any],
) -> None:
    app, api, ids = await _fleet(make_app_client)
    sim = Simulator(api)
    before = await _patches(sim)
    summary, results = await _run(app)
    assert summary.selected == 3 and summary.counts == {UPDATED: 3}
    assert sorted(r.connection_id for r in results) == sorted(ids)
    for r in results:
        assert r.outcome == UPDATED and r.error is None and r.requests == 2
        assert r.changes["schema_change_handling"] == "BLOCK_ALL"
        assert r.changes["tables_disabled"] == ["stripe.tickets"]
        assert r.changes["columns_hashed"] == ["stripe.opportunities.email"]
        remote = await _remote_schema(sim, ids[r.connection_id])
        assert remote["schema_change_handling"] == "BLOCK_ALL"
        tables = remote["schemas"]["stripe"]["tables"]
        assert tables["tickets"]["enabled"] is False
        assert tables["opportunities"]["columns"]["email"]["hashed"] is True
    assert await _patches(sim) == before + 3
    # Already under the policy: one GET each, no PATCH.
    summary, results = await _run(app)
    assert summary.counts == {UNCHANGED: 3} and summary.requests == 3
    assert all(r.changes == {} for r in results)
    assert await _patches(sim) == before + 3


async def test_a_stricter_handling_chosen_later_is_kept(
    make_app_client: Callable[..., Any],
) -> None:
    app, api, ids = await _fleet(make_app_client)
    cid = sorted(ids)[0]
    r = await api.patch(
        f"/v1/connections/{cid}/schema", json={"schema_change_handling": "BLOCK_ALL"}
    )
    assert r.status_code == 200, r.text
    lenient = SchemaPolicy(schema_change_handling="ALLOW_ALL")
    summary, _ = await _run(app, lenient)
    assert summary.counts == {UNCHANGED: 3}
    remote = await _remote_schema(Simulator(api), ids[cid])
    assert remote["schema_change_handling"] == "BLOCK_ALL"


async def test_filters_select_end_users_services_and_ids(
    make_app_client: Callable[..., Any],
) -> None:
    app, _, ids = await _fleet(make_app_client)
    summary, results = await _run(app, selection=FleetSelection(end_users=("beta",)))
    assert summary.selected == 1 and [r.end_user for r in results] == ["beta"]
    summary, _ = await _run(app, selection=FleetSelection(services=("hubspot",)))
    assert summary.selected == 0 and summary.counts == {}
    one = sorted(ids)[2]
    summary, results = await _run(app, selection=FleetSelection(connection_ids=(one,)))
    assert [r.connection_id for r in results] == [one]


async def test_deleted_connections_are_not_touched(make_app_client: Callable[..., Any]) -> None:
    app, api, ids = await _fleet(make_app_client)
    gone = sorted(ids)[0]
    assert (await api.delete(f"/v1/connections/{gone}")).status_code in (200, 202, 204)
    summary, results = await _run(app)
    assert summary.selected == 2 and gone not in {r.connection_id for r in results}


async def test_dry_run_reports_and_changes_nothing(make_app_client: Callable[..., Any]) -> None:
    app, api, ids = await _fleet(make_app_client)
    sim = Simulator(api)
    before = await _patches(sim)
    summary, results = await _run(app, dry_run=True)
    assert summary.counts == {WOULD_UPDATE: 3}
    assert all(r.changes["tables_disabled"] == ["stripe.tickets"] for r in results)
    assert await _patches(sim) == before
    remote = await _remote_schema(sim, next(iter(ids.values())))
    assert remote["schemas"]["stripe"]["tables"]["tickets"]["enabled"] is True


async def test_a_failure_is_reported_per_connection_and_a_resume_retries_only_it(
    make_app_client: Callable[..., Any],
) -> None:
    app, api, ids = await _fleet(make_app_client)
    sim = Simulator(api)
    broken = sorted(ids)[1]
    await sim.fault(
        method="GET",
        path_regex=f"/v1/connections/{ids[broken]}/schemas$",
        status=404,
        code="NotFound_SchemaConfig",
        count=1,
    )
    summary, results = await _run(app)
    assert summary.counts == {UPDATED: 2, FAILED: 1} and summary.failed == 1
    failed = next(r for r in results if r.outcome == FAILED)
    assert failed.connection_id == broken
    assert failed.error is not None
    assert failed.error["status"] == 404 and failed.error["code"] == "NotFound_SchemaConfig"
    done = {r.connection_id for r in results if r.outcome == UPDATED}
    summary, results = await _run(app, done=done)
    assert summary.skipped_done == 2 and summary.counts == {UPDATED: 1}
    assert [r.connection_id for r in results] == [broken]


async def test_each_run_leaves_one_audit_record(make_app_client: Callable[..., Any]) -> None:
    from app.audit.models import AuditRecord

    app, _, _ = await _fleet(make_app_client)
    await _run(app, concurrency=2)
    async with app.state.sessionmaker() as s:
        rows = list(
            await s.scalars(
                select(AuditRecord).where(AuditRecord.action == "connection.schema_policy_apply")
            )
        )
    assert len(rows) == 1
    details = rows[0].details
    assert details["counts"] == {UPDATED: 3} and details["policy"]["blocked_tables"] == [
        "*.tickets"
    ]


async def test_under_a_rate_limit_no_429_escapes(make_app_client: Callable[..., Any]) -> None:
    """The simulator allows 20 requests/s (burst 4); the client's per-second budget is 20/s
    (burst 1): every connection ends updated, none with a 429."""
    app, api, _ = await _fleet(make_app_client)
    app.state.fivetran.budget = CombinedBudget(LocalTokenBucket(10_000), RateBucket(20, 1))
    r = await api.post(f"{CONTROL}/rate-limit", json={"per_second": 20, "burst": 4})
    assert r.status_code == 200, r.text
    summary, results = await _run(app, concurrency=8)
    assert summary.counts == {UPDATED: 3}
    assert all(r.error is None for r in results)


def test_cli_writes_a_report_and_resumes_from_it(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command selects nothing on an empty database, writes its summary, and refuses
    --resume without a report; a report line cut short by an interrupt is redone."""
    from typer.testing import CliRunner

    from app.cli import cli

    monkeypatch.setenv("PBF_DATABASE_URL", database_url)
    monkeypatch.setenv("PBF_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("PBF_FIVETRAN__BASE_URL", "http://127.0.0.1:9/never-called")
    report = tmp_path / "report.jsonl"
    report.write_text(
        json.dumps({"connection_id": "con_a", "outcome": "updated"})
        + "\n"
        + json.dumps({"connection_id": "con_b", "outcome": "failed"})
        + "\n"
        + '{"connection_id": "con_c", "outc'
    )
    runner = CliRunner()
    bad = runner.invoke(cli, ["onboarding", "apply-schema-policy", "--sandbox", "--resume"])
    assert bad.exit_code == 2 and "--resume needs --report" in bad.output
    ok = runner.invoke(
        cli,
        ["onboarding", "apply-schema-policy", "--sandbox", "--report", str(report), "--resume"],
    )
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stderr.strip().splitlines()[-1])["summary"]
    assert summary["selected"] == 0 and summary["counts"] == {}
