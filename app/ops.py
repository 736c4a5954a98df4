"""Operational endpoints: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.dependencies import StateDep
from app.migrations_runner import pending_heads

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, migrations current, keys loaded",
    responses={503: {"description": "Not ready; `checks` says why."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    checks: dict[str, dict[str, Any]] = {}
    engine = state.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            missing = await conn.run_sync(pending_heads)
        checks["database"] = {"ok": True}
        checks["migrations"] = (
            {"ok": True}
            if not missing
            else {
                "ok": False,
                "reason": f"not at head(s): {', '.join(sorted(missing))}; "
                "run 'pbf-headless migrate'",
            }
        )
    except Exception as exc:  # report, never raise: this is a probe
        checks["database"] = {"ok": False, "reason": f"unreachable ({type(exc).__name__})"}
        checks["migrations"] = {"ok": False, "reason": "database unreachable"}
    for name, probe in state.readiness_checks.items():
        try:
            ok, reason = await probe()
        except Exception as exc:
            ok, reason = False, f"{type(exc).__name__}"
        checks[name] = {"ok": ok} if ok else {"ok": False, "reason": reason}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
