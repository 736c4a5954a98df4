"""Account, groups and destinations of the Fivetran API simulator (a **simulation**)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.fivetran.index import destination_services
from app.fivetran.payloads import mask_secrets
from app.sandbox.fivetran.simulator import (
    Handler,
    SimError,
    Simulator,
    invalid,
    not_found,
    ok,
    routes_router,
    simulator_of,
)
from app.sandbox.fivetran.state import new_word_id, now_iso, ssh_rsa_public_key

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


async def account_info(request: Request) -> Response:
    return ok(
        {"account_id": "sandbox_account", "account_name": "Sandbox", "user_id": "sandbox_user"}
    )


# ------------------------------------------------------------------------------- groups


async def create_group(request: Request) -> Response:
    sim = simulator_of(request)
    body = await sim.body(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not name:
        raise invalid("Field 'name' is required")
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid(
            "Invalid group name: use letters, digits and underscores, starting with a "
            "letter or underscore"
        )
    if any(g["name"] == name for g in sim.state.groups.values()):
        raise SimError(409, "Conflict", f"Group with name '{name}' already exists")
    gid = new_word_id(sim.state.groups)
    group = {"id": gid, "name": name, "created_at": now_iso()}
    sim.state.groups[gid] = group
    return ok(dict(group), "Group has been created", 201)


async def list_groups(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(sim.page(request, [dict(g) for g in sim.state.groups.values()]))


async def get_group(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(dict(sim.group(request.path_params["group_id"])))


async def patch_group(request: Request) -> Response:
    sim = simulator_of(request)
    group = sim.group(request.path_params["group_id"])
    body = await sim.body(request)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        raise invalid("Field 'name' is required and must be a valid name")
    group["name"] = name
    return ok(dict(group), "Group has been updated")


async def delete_group(request: Request) -> Response:
    sim = simulator_of(request)
    gid = request.path_params["group_id"]
    sim.group(gid)
    for cid in [c["id"] for c in sim.state.connections.values() if c["group_id"] == gid]:
        sim.drop_connection(cid)
    sim.state.destinations.pop(gid, None)
    for wid in [w["id"] for w in sim.state.webhooks.values() if w.get("group_id") == gid]:
        sim.state.webhooks.pop(wid, None)
    del sim.state.groups[gid]
    return ok(message=f"Group with id '{gid}' has been deleted")


async def group_public_key(request: Request) -> Response:
    sim = simulator_of(request)
    gid = request.path_params["group_id"]
    sim.group(gid)
    return ok({"public_key": ssh_rsa_public_key(f"group:{gid}", "fivetran user key")})


# ------------------------------------------------------------------------------- destinations


async def create_destination(request: Request) -> Response:
    sim = simulator_of(request)
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    for key in ("group_id", "service", "time_zone_offset"):
        if not body.get(key):
            raise invalid(f"Field '{key}' is required")
    service = body["service"]
    if service not in destination_services():
        raise invalid(f"Unsupported service '{service}'")
    gid = body["group_id"]
    sim.group(gid)
    if gid in sim.state.destinations:
        raise SimError(409, "Conflict", f"Destination for group '{gid}' already exists")
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise invalid("Invalid field 'config': must be an object")
    bad = [k for k, v in config.items() if v == "invalid"]
    tests = [
        {
            "title": "Host Connection",
            "status": "FAILED" if bad else "PASSED",
            "message": f"Invalid value of '{bad[0]}'" if bad else "",
        }
    ]
    destination = {
        "id": gid,
        "group_id": gid,
        "service": service,
        "region": body.get("region", "GCP_US_EAST4"),
        "time_zone_offset": str(body["time_zone_offset"]),
        "setup_status": "incomplete" if bad else "connected",
        "daylight_saving_time_enabled": bool(body.get("daylight_saving_time_enabled", False)),
        "networking_method": body.get("networking_method", "Directly"),
        "setup_tests": tests,
        "config": config,
    }
    sim.state.destinations[gid] = destination
    return ok(dest_view(destination), "Destination has been created", 201)


def dest_view(destination: dict[str, Any]) -> dict[str, Any]:
    return mask_secrets(dict(destination))


def dest(sim: Simulator, id: str) -> dict[str, Any]:
    destination = sim.state.destinations.get(id)
    if destination is None:
        raise not_found("Destination", id)
    return destination


async def get_destination(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(dest_view(dest(sim, request.path_params["destination_id"])))


async def patch_destination(request: Request) -> Response:
    sim = simulator_of(request)
    destination = dest(sim, request.path_params["destination_id"])
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    allowed = {
        "region",
        "time_zone_offset",
        "config",
        "trust_certificates",
        "trust_fingerprints",
        "run_setup_tests",
        "daylight_saving_time_enabled",
        "networking_method",
    }
    for key in body:
        if key not in allowed:
            raise invalid(f"Invalid field '{key}': unknown field")
    if "config" in body:
        if not isinstance(body["config"], dict):
            raise invalid("Invalid field 'config': must be an object")
        destination["config"] = {**destination["config"], **body["config"]}
    for key in (
        "region",
        "time_zone_offset",
        "daylight_saving_time_enabled",
        "networking_method",
    ):
        if key in body:
            destination[key] = body[key]
    bad = [k for k, v in destination["config"].items() if v == "invalid"]
    destination["setup_tests"] = [
        {
            "title": "Host Connection",
            "status": "FAILED" if bad else "PASSED",
            "message": f"Invalid value of '{bad[0]}'" if bad else "",
        }
    ]
    destination["setup_status"] = "incomplete" if bad else "connected"
    return ok(dest_view(destination), "Destination has been updated")


async def delete_destination(request: Request) -> Response:
    sim = simulator_of(request)
    did = request.path_params["destination_id"]
    dest(sim, did)
    del sim.state.destinations[did]
    return ok(message=f"Destination with id '{did}' has been deleted")


async def test_destination(request: Request) -> Response:
    sim = simulator_of(request)
    destination = dest(sim, request.path_params["destination_id"])
    await sim.body(request, required=False)
    return ok(dest_view(destination), "Setup tests have been completed")


@cache
def router() -> APIRouter:
    """``/v1/account/info``, ``/v1/groups…`` and ``/v1/destinations…`` (built once per
    process; the handlers find their simulator with :func:`simulator_of`)."""
    routes: list[tuple[str, str, Handler]] = [
        ("GET", "/v1/account/info", account_info),
        ("POST", "/v1/groups", create_group),
        ("GET", "/v1/groups", list_groups),
        ("GET", "/v1/groups/{group_id}", get_group),
        ("PATCH", "/v1/groups/{group_id}", patch_group),
        ("DELETE", "/v1/groups/{group_id}", delete_group),
        ("GET", "/v1/groups/{group_id}/public-key", group_public_key),
        ("POST", "/v1/destinations", create_destination),
        ("GET", "/v1/destinations/{destination_id}", get_destination),
        ("PATCH", "/v1/destinations/{destination_id}", patch_destination),
        ("DELETE", "/v1/destinations/{destination_id}", delete_destination),
        ("POST", "/v1/destinations/{destination_id}/test", test_destination),
    ]
    return routes_router(routes)
