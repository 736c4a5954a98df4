"""The simulator's control API under ``/_control`` (unauthenticated, sandbox and tests only).

Faults, simulated latency, sync results, breakage, the request log, webhook deliveries,
reset and a state summary; the contract is in :mod:`app.sandbox.fivetran.app`.
"""

from __future__ import annotations

import re
from functools import cache

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.sandbox.fivetran.simulator import (
    Handler,
    invalid,
    ok,
    routes_router,
    simulator_of,
)
from app.sandbox.fivetran.state import Fault, now_iso

_SYNC_STATUSES = {"SUCCESSFUL", "FAILED", "FAILURE_WITH_TASK", "RESCHEDULED"}


async def ctl_add_fault(request: Request) -> Response:
    sim = simulator_of(request)
    body = await sim.body(request)
    if not isinstance(body, dict) or not isinstance(body.get("path_regex"), str):
        raise invalid("Field 'path_regex' is required")
    try:
        re.compile(body["path_regex"])
        fault = Fault(
            method=body.get("method"),
            path_regex=body["path_regex"],
            status=int(body["status"]) if body.get("status") is not None else None,
            count=int(body.get("count", 1)),
            retry_after=float(body["retry_after"]) if body.get("retry_after") is not None else None,
            delay_seconds=float(body.get("delay_seconds") or 0),
            code=body.get("code"),
            after=bool(body.get("after", False)),
        )
    except (re.error, TypeError, ValueError) as exc:
        raise invalid(f"Invalid fault: {exc}") from None
    sim.state.faults.append(fault)
    return ok({"faults": len(sim.state.faults)}, "Fault added", 201)


async def ctl_latency(request: Request) -> Response:
    sim = simulator_of(request)
    try:
        seconds = sim.latency.set(await sim.body(request))
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return ok({"seconds": seconds}, "Latency set")


async def ctl_clear_faults(request: Request) -> Response:
    sim = simulator_of(request)
    sim.state.faults.clear()
    return ok(message="Faults cleared")


async def ctl_sync_result(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request)
    status = body.get("status") if isinstance(body, dict) else None
    if status not in _SYNC_STATUSES:
        raise invalid("Field 'status' must be one of " + ", ".join(sorted(_SYNC_STATUSES)))
    sim.finish_sync(connection, status, reason=body.get("reason"), task_type=body.get("task_type"))
    return ok(sim.view(connection), "Sync result simulated")


async def ctl_break(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request, required=False)
    reason = (body or {}).get("reason") if isinstance(body, dict) else None
    message = reason or "Reconnect: the credentials are invalid or were revoked"
    status = connection["status"]
    status["setup_state"] = "broken"
    if not any(t.get("code") == "reconnect" for t in status["tasks"]):
        status["tasks"].append({"code": "reconnect", "message": message})
    connection["failed_at"] = now_iso()
    sim.webhooks.emit("connection_failure", connection, {"reason": message})
    return ok(sim.view(connection), "Connection broken")


async def ctl_requests(request: Request) -> Response:
    sim = simulator_of(request)
    return ok({"items": list(sim.state.requests)})


async def ctl_deliveries(request: Request) -> Response:
    sim = simulator_of(request)
    await sim.webhooks.drain()
    return ok({"items": list(sim.state.deliveries)})


async def ctl_drain(request: Request) -> Response:
    sim = simulator_of(request)
    await sim.webhooks.drain()
    return ok(message="Webhook deliveries drained")


async def ctl_state(request: Request) -> Response:
    sim = simulator_of(request)
    state = sim.state
    return ok(
        {
            "groups": len(state.groups),
            "destinations": len(state.destinations),
            "connections": len(state.connections),
            "webhooks": len(state.webhooks),
            "syncing": sorted(state.sync_ids),
            "sync_seconds": sim.syncs.seconds,
            "state_file": sim.state_file,
        }
    )


async def ctl_reset(request: Request) -> Response:
    sim = simulator_of(request)
    await sim.webhooks.drain()
    sim.state.reset()
    return ok(message="Simulator reset")


@cache
def router() -> APIRouter:
    """``/_control…`` routes (built once per process; the handlers find their simulator with
    :func:`simulator_of`)."""
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/_control/faults", ctl_add_fault),
        ("DELETE", "/_control/faults", ctl_clear_faults),
        ("POST", "/_control/latency", ctl_latency),
        ("POST", "/_control/connections/{connection_id}/sync-result", ctl_sync_result),
        ("POST", "/_control/connections/{connection_id}/break", ctl_break),
        ("GET", "/_control/requests", ctl_requests),
        ("GET", "/_control/deliveries", ctl_deliveries),
        ("POST", "/_control/webhooks/drain", ctl_drain),
        ("POST", "/_control/reset", ctl_reset),
        ("GET", "/_control/state", ctl_state),
    ]
    return routes_router(routes)
