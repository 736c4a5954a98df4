"""Schema configs of the Fivetran API simulator (a **simulation**): get, reload and patch.

A connection has no schema config before its first reload or successful sync
(``NotFound_SchemaConfig``). Served under both connection families.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.sandbox.fivetran.simulator import (
    Handler,
    SimError,
    invalid,
    ok,
    routes_router,
    simulator_of,
)


async def get_schemas(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    config = sim.state.schema_configs.get(cid)
    if config is None:
        raise SimError(
            404,
            "NotFound_SchemaConfig",
            f"Cannot find entity 'StandardConfig' with id '{cid}': reload the schema first",
        )
    return ok(config)


async def reload_schemas(request: Request) -> Response:
    sim = simulator_of(request)
    connection = sim.conn(request.path_params["connection_id"])
    body = await sim.body(request, required=False) or {}
    mode = body.get("exclude_mode", "PRESERVE") if isinstance(body, dict) else None
    if mode not in ("PRESERVE", "EXCLUDE"):
        raise invalid("Invalid field 'exclude_mode': must be one of PRESERVE, EXCLUDE")
    config = sim.ensure_schema(connection)
    return ok(config, "Connection schema has been reloaded")


async def patch_schemas(request: Request) -> Response:
    sim = simulator_of(request)
    cid = request.path_params["connection_id"]
    sim.conn(cid)
    config = sim.state.schema_configs.get(cid)
    if config is None:
        raise SimError(404, "NotFound_SchemaConfig", f"Cannot find schema config of '{cid}'")
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    handling = body.get("schema_change_handling")
    if handling is not None:
        if handling not in ("ALLOW_ALL", "ALLOW_COLUMNS", "BLOCK_ALL"):
            raise invalid(
                "Invalid field 'schema_change_handling': must be one of ALLOW_ALL, "
                "ALLOW_COLUMNS, BLOCK_ALL"
            )
        config["schema_change_handling"] = handling
        config["enable_new_by_default"] = handling == "ALLOW_ALL"
    schemas = body.get("schemas") or {}
    if not isinstance(schemas, dict):
        raise invalid("Invalid field 'schemas': must be an object")
    for sname, sbody in schemas.items():
        target = config["schemas"].get(sname)
        if target is None:
            raise SimError(404, "NotFound", f"Schema '{sname}' not found")
        _apply(target, sbody, f"schemas.{sname}")
        for tname, tbody in (sbody.get("tables") or {}).items():
            table = target["tables"].get(tname)
            if table is None:
                raise SimError(404, "NotFound", f"Table '{sname}.{tname}' not found")
            _apply(table, tbody, f"schemas.{sname}.tables.{tname}")
            if "sync_mode" in tbody:
                if tbody["sync_mode"] not in ("SOFT_DELETE", "HISTORY", "LIVE"):
                    raise invalid(f"Invalid field 'schemas.{sname}.tables.{tname}.sync_mode'")
                table["sync_mode"] = tbody["sync_mode"]
            for cname, cbody in (tbody.get("columns") or {}).items():
                column = table["columns"].setdefault(
                    cname,
                    {
                        "name_in_destination": cname,
                        "enabled": True,
                        "hashed": False,
                        "is_primary_key": False,
                    },
                )
                path = f"schemas.{sname}.tables.{tname}.columns.{cname}"
                if not column.get("enabled_patch_settings", {}).get("allowed", True) and (
                    "enabled" in cbody and cbody["enabled"] != column["enabled"]
                ):
                    raise invalid(f"Field '{path}.enabled' cannot be changed")
                _apply(column, cbody, path, extra=("hashed", "is_primary_key"))
    return ok(config, "Connection schema config has been updated")


def _apply(target: dict[str, Any], patch: Any, path: str, extra: tuple[str, ...] = ()) -> None:
    if not isinstance(patch, dict):
        raise invalid(f"Invalid field '{path}': must be an object")
    for key in ("enabled", *extra):
        if key in patch:
            if not isinstance(patch[key], bool):
                raise invalid(f"Invalid field '{path}.{key}': must be a boolean")
            target[key] = patch[key]


@cache
def router() -> APIRouter:
    """``…/{connection_id}/schemas`` routes for both connection families (built once per
    process; the handlers find their simulator with :func:`simulator_of`)."""
    routes: list[tuple[str, str, Handler]] = []
    for family in ("connections", "connectors"):
        one = f"/v1/{family}/{{connection_id}}"
        routes += [
            ("GET", one + "/schemas", get_schemas),
            ("PATCH", one + "/schemas", patch_schemas),
            ("POST", one + "/schemas/reload", reload_schemas),
        ]
    return routes_router(routes)
