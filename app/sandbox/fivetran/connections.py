"""Connections of the Fivetran API simulator (a **simulation**): create, list, patch, delete,
sync, re-sync, setup tests, certificates and fingerprints.

Served under ``/v1/connections…`` and the legacy ``/v1/connectors…`` alias (same handlers).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.fivetran.index import get_service
from app.fivetran.payloads import PayloadError, validate_create_payload, validate_update_payload
from app.sandbox.fivetran.connect_card import attach_card, sim_base_url
from app.sandbox.fivetran.simulator import (
    SCHEMA_KEYS,
    Handler,
    SimError,
    invalid,
    ok,
    payload_error,
    routes_router,
    schema_name,
    simulator_of,
)
from app.sandbox.fivetran.state import new_word_id, now_iso


async def group_connections(request: Request) -> Response:
    sim = simulator_of(request)
    gid = request.path_params["group_id"]
    sim.group(gid)
    schema = request.query_params.get("schema")
    items = [
        sim.view(c)
        for c in sim.state.connections.values()
        if c["group_id"] == gid and (schema is None or c["schema"] == schema)
    ]
    return ok(sim.page(request, items))


async def create_connection(request: Request) -> Response:
    sim = simulator_of(request)
    body = await sim.body(request)
    try:
        validate_create_payload(body)
    except PayloadError as exc:
        raise payload_error(exc) from None
    gid = body["group_id"]
    sim.group(gid)
    service = body["service"]
    spec = get_service(service)
    assert spec is not None
    config = dict(body["config"])
    schema = schema_name(service, config)
    if any(c["group_id"] == gid and c["schema"] == schema for c in sim.state.connections.values()):
        raise SimError(
            409,
            "Conflict",
            f"Connection with schema '{schema}' already exists in group '{gid}'",
        )
    cid = new_word_id(sim.state.connections)
    paused = bool(body.get("paused", True))
    connection: dict[str, Any] = {
        "id": cid,
        "group_id": gid,
        "service": service,
        "service_version": 1,
        "schema": schema,
        "connected_by": "sandbox_user",
        "created_at": now_iso(),
        "succeeded_at": None,
        "failed_at": None,
        "paused": paused,
        "pause_after_trial": bool(body.get("pause_after_trial", False)),
        "sync_frequency": int(body.get("sync_frequency", 360)),
        "daily_sync_time": body.get("daily_sync_time"),
        "schedule_type": body.get("schedule_type", "auto"),
        "data_delay_sensitivity": body.get("data_delay_sensitivity", "NORMAL"),
        "data_delay_threshold": body.get("data_delay_threshold", 0),
        "networking_method": body.get("networking_method", "Directly"),
        "status": {
            "setup_state": "incomplete",
            "sync_state": "paused" if paused else "scheduled",
            "update_state": "on_schedule",
            "is_historical_sync": True,
            "tasks": [],
            "warnings": [],
        },
        "setup_tests": [],
        "source_sync_details": {},
        "config": config,
    }
    for key in (
        "destination_schema_names",
        "proxy_agent_id",
        "private_link_id",
        "hybrid_deployment_agent_id",
    ):
        if key in body:
            connection[key] = body[key]
    if "connect_card_config" in body:
        attach_card(connection, body["connect_card_config"], sim_base_url(request))
    sim.state.connections[cid] = connection
    if "auth" in body:
        sim.state.auth[cid] = dict(body["auth"])
    sim.webhooks.emit("create_connector", connection)
    if body.get("run_setup_tests", True):
        await sim.run_tests(
            connection,
            trust_fingerprints=bool(body.get("trust_fingerprints", False)),
            trust_certificates=bool(body.get("trust_certificates", False)),
        )
    return ok(sim.view(connection), "Connection has been created", 201)


async def list_connections(request: Request) -> Response:
    sim = simulator_of(request)
    gid = request.query_params.get("group_id")
    schema = request.query_params.get("schema")
    items = [
        sim.view(c)
        for c in sim.state.connections.values()
        if (gid is None or c["group_id"] == gid) and (schema is None or c["schema"] == schema)
    ]
    return ok(sim.page(request, items))


async def get_connection(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(sim.view(sim.conn(request.path_params["connection_id"])))


async def patch_connection(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request)
    try:
        validate_update_payload(connection["service"], body)
    except PayloadError as exc:
        raise payload_error(exc) from None
    spec = get_service(connection["service"])
    assert spec is not None
    new_config = body.get("config") or {}
    for key in SCHEMA_KEYS[spec.schema_format]:
        if key in new_config and new_config[key] != connection["config"].get(key):
            raise invalid(f"Field 'config.{key}' cannot be changed")
    events: list[str] = []
    if "paused" in body and body["paused"] != connection["paused"]:
        connection["paused"] = body["paused"]
        if connection["status"]["sync_state"] != "syncing":
            connection["status"]["sync_state"] = "paused" if body["paused"] else "scheduled"
        events.append("pause_connector" if body["paused"] else "resume_connector")
        first_sync = not body["paused"] and sim.never_synced(connection)
    else:
        first_sync = False
    simple = (
        "sync_frequency",
        "daily_sync_time",
        "schedule_type",
        "pause_after_trial",
        "data_delay_sensitivity",
        "data_delay_threshold",
        "networking_method",
        "proxy_agent_id",
        "private_link_id",
        "hybrid_deployment_agent_id",
    )
    edited = False
    for key in simple:
        if key in body:
            connection[key] = body[key]
            edited = True
    if "is_historical_sync" in body:
        connection["status"]["is_historical_sync"] = body["is_historical_sync"]
        edited = True
    if new_config:
        connection["config"] = {**connection["config"], **new_config}
        edited = True
    if "auth" in body:
        sim.state.auth[connection["id"]] = {
            **sim.state.auth.get(connection["id"], {}),
            **body["auth"],
        }
        edited = True
    if edited:
        events.append("edit_connector")
    for event in events:
        sim.webhooks.emit(event, connection)
    if first_sync:
        sim.start_sync(connection)  # Fivetran starts the historical sync on first unpause
    run = body.get("run_setup_tests")
    if run is True or (run is None and ("config" in body or "auth" in body)):
        await sim.run_tests(
            connection,
            trust_fingerprints=bool(body.get("trust_fingerprints", False)),
            trust_certificates=bool(body.get("trust_certificates", False)),
        )
    return ok(sim.view(connection), "Connection has been updated")


async def delete_connection(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    connection = sim.drop_connection(cid)
    sim.webhooks.emit("delete_connector", connection)
    return ok(message=f"Connection with id '{cid}' has been deleted")


async def sync(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    connection = sim.conn(cid)
    body = await sim.body(request, required=False)
    force = bool(body.get("force", False)) if isinstance(body, dict) else False
    if force:
        sim.webhooks.emit("force_update_connector", connection)
        connection["status"]["sync_state"] = "scheduled"
    sim.start_sync(connection)
    return ok(message=f"Sync has been successfully triggered for connection with id '{cid}'")


async def legacy_force(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    sim.webhooks.emit("force_update_connector", connection)
    connection["status"]["sync_state"] = "scheduled"
    sim.start_sync(connection)
    return ok(message="Sync has been successfully triggered")


async def resync(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request, required=False)
    scope = body.get("scope") if isinstance(body, dict) else None
    if isinstance(body, dict) and "scope" in body:
        if (
            not isinstance(scope, dict)
            or not scope
            or not all(
                isinstance(v, list) and v and all(isinstance(t, str) for t in v)
                for v in scope.values()
            )
        ):
            raise invalid("Invalid field 'scope': non-empty {schema: [tables]} required")
    if connection["status"]["sync_state"] == "syncing":
        raise SimError(409, "Conflict", "A sync is in progress and cannot be interrupted")
    if scope:
        sim.webhooks.emit("resync_table", connection, {"scope": scope})
    else:
        connection["status"]["is_historical_sync"] = True
        sim.webhooks.emit("resync_connector", connection)
    sim.start_sync(connection)
    return ok(message="Re-sync has been triggered successfully")


async def test_connection(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    for key in ("trust_certificates", "trust_fingerprints"):
        if key in body and not isinstance(body[key], bool):
            raise invalid(f"Invalid field '{key}': must be a boolean")
    await sim.run_tests(
        connection,
        trust_fingerprints=bool(body.get("trust_fingerprints", False)),
        trust_certificates=bool(body.get("trust_certificates", False)),
    )
    return ok(sim.view(connection), "Setup tests have been completed")


# ------------------------------------------------------------------------------- certs


async def list_certificates(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    items = list(sim.state.certificates.get(cid, {}).values())
    return ok(sim.page(request, items))


async def approve_certificate(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    body = await sim.body(request)
    if not isinstance(body, dict) or not body.get("hash") or not body.get("encoded_cert"):
        raise invalid("Fields 'hash' and 'encoded_cert' are required")
    try:
        der = base64.b64decode(body["encoded_cert"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Invalid field 'encoded_cert': must be base64") from None
    item = {
        "id": body["hash"],
        "name": "sandbox certificate",
        "hash": body["hash"],
        "type": "TLS",
        "sha1": hashlib.sha1(der).hexdigest(),  # noqa: S324 - a fingerprint, not security
        "sha256": hashlib.sha256(der).hexdigest(),
        "public_key": "",
        "validated_by": "sandbox_user",
        "validated_date": now_iso(),
    }
    sim.state.certificates.setdefault(cid, {})[body["hash"]] = item
    return ok(item, "The certificate has been approved", 201)


async def list_fingerprints(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    return ok(sim.page(request, list(sim.state.fingerprints.get(cid, {}).values())))


async def approve_fingerprint(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    body = await sim.body(request)
    if not isinstance(body, dict) or not body.get("hash") or not body.get("public_key"):
        raise invalid("Fields 'hash' and 'public_key' are required")
    item = {
        "id": body["hash"],
        "hash": body["hash"],
        "public_key": body["public_key"],
        "validated_by": "sandbox_user",
        "validated_date": now_iso(),
    }
    sim.state.fingerprints.setdefault(cid, {})[body["hash"]] = item
    return ok(item, "The fingerprint has been approved", 201)


@cache
def router() -> APIRouter:
    """Connection routes, for the current family and the legacy alias (built once per
    process; the handlers find their simulator with :func:`simulator_of`)."""
    routes: list[tuple[str, str, Handler]] = []
    # The current family first, then the legacy /v1/connectors alias on the same handlers.
    for family in ("connections", "connectors"):
        base = f"/v1/{family}"
        one = base + "/{connection_id}"
        routes += [
            ("GET", f"/v1/groups/{{group_id}}/{family}", group_connections),
            ("POST", base, create_connection),
            ("GET", base, list_connections),
            ("GET", one, get_connection),
            ("PATCH", one, patch_connection),
            ("DELETE", one, delete_connection),
            ("POST", one + "/sync", sync),
            ("POST", one + "/force", legacy_force),
            ("POST", one + "/resync", resync),
            ("POST", one + "/test", test_connection),
            ("GET", one + "/certificates", list_certificates),
            ("POST", one + "/certificates", approve_certificate),
            ("GET", one + "/fingerprints", list_fingerprints),
            ("POST", one + "/fingerprints", approve_fingerprint),
        ]
    return routes_router(routes)
