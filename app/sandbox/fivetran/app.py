"""The Fivetran REST API simulator — a **simulation** for sandbox mode and tests.

Stateful and in-memory; answers like Fivetran does (paths, ``{code, message, data}``
envelope, status codes and ``code`` values from Fivetran's definition and observed responses,
as collected in the research notes on the Fivetran API):

* Basic auth with the sandbox key/secret; missing/wrong → 401 ``AuthFailed``.
* ``Accept`` must be JSON (``application/json`` with or without ``;version=1|2``) → else 406;
  POST/PATCH bodies must be ``application/json`` → else 415.
* Create/patch bodies are validated with the same validator as the client's payload builders
  (:mod:`app.fivetran.payloads`): missing ``group_id`` / ``config.schema``, unknown service
  (``Unsupported service '…'``), wrong type/enum, unknown field → 400 ``InvalidInput``.
* Duplicate schema in one group → **409 ``Conflict``** ("Connection with schema '…' already
  exists in group '…'"): Fivetran's exact code for this case is undocumented; 409 Conflict is
  the documented pattern for duplicates.
* Unknown ids → 404 with ``NotFound_Integration`` (connections, the code Fivetran actually
  returns), ``NotFound_Group``, ``NotFound_Destination``, ``NotFound_Webhook``,
  ``NotFound_SchemaConfig`` (schema config before the first reload or sync).
* Lists page with ``cursor`` (unpadded base64 of ``{"skip": n}``) and ``limit`` 1..1000
  (default 100); ``next_cursor`` only when there is a next page.
* ``/v1/connectors…`` legacy aliases serve the same handlers as ``/v1/connections…``.
* Webhooks: signed events (see :mod:`app.sandbox.fivetran.webhooks`); URLs must be HTTPS,
  except ``http://`` loopback (127.0.0.1, localhost, ::1) in the sandbox.
* Setup tests: :mod:`app.sandbox.fivetran.setup_tests`.

Control API (unauthenticated, sandbox only) under ``/_control``: ``POST /faults``
``{method, path_regex, status, count, retry_after?, delay_seconds?, code?, after?}`` (``after``:
process the request, then wait ``delay_seconds`` and answer with the fault — a lost
response — or, without ``status``, with the real answer — a slow one), ``DELETE /faults``,
``POST /connections/{id}/sync-result`` ``{status: SUCCESSFUL|FAILED, reason?}``,
``POST /connections/{id}/break``, ``GET /requests`` (method, path, status, masked body),
``GET /deliveries``, ``POST /webhooks/drain``, ``POST /reset``, ``GET /state`` (counts,
running syncs, sync delay, state file), ``POST /latency`` ``{seconds}`` (every other request
waits that long: :mod:`app.sandbox.latency`).

Syncs finish by themselves after ``sync_seconds`` (:mod:`app.sandbox.fivetran.syncs`); the
state survives restarts of the sandbox server (:mod:`app.sandbox.persistence`).

Known deviations: no connect-card, users/teams, transformations, metadata or sync-history
endpoints; webhooks are not test-called on creation; certificates are stored but no setup test
requires one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.fivetran.index import destination_services, get_service
from app.fivetran.payloads import (
    PayloadError,
    mask_secrets,
    validate_create_payload,
    validate_update_payload,
)
from app.sandbox.fivetran.setup_tests import TokenChecker, passed, run_setup_tests
from app.sandbox.fivetran.state import (
    Fault,
    SimState,
    decode_cursor,
    encode_cursor,
    generated_schema,
    new_word_id,
    now_iso,
    ssh_rsa_public_key,
)
from app.sandbox.fivetran.syncs import SyncClock
from app.sandbox.fivetran.webhooks import WEBHOOK_EVENTS, WebhookDispatcher, event_payload
from app.sandbox.latency import LatencyMiddleware, SimulatedLatency

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_SYNC_STATUSES = {"SUCCESSFUL", "FAILED", "FAILURE_WITH_TASK", "RESCHEDULED"}
_DEFAULT_CODES = {
    400: "InvalidInput",
    401: "AuthFailed",
    403: "AccessDenied",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_SCHEMA_KEYS = {
    "schema": ("schema",),
    "schema_table": ("schema", "table"),
    "schema_prefix": ("schema_prefix",),
    "schema_table_group": ("schema", "table_group_name"),
}


class SimError(Exception):
    """An error answer of the simulator, in Fivetran's envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


def _ok(data: Any = None, message: str = "Success", status: int = 200, code: str = "Success"):
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status)


def _not_found(entity: str, id: str, code: str | None = None) -> SimError:
    return SimError(
        404, code or f"NotFound_{entity}", f"Cannot find entity '{entity}' with id '{id}'"
    )


def _invalid(message: str) -> SimError:
    return SimError(400, "InvalidInput", message)


def _payload_error(exc: PayloadError) -> SimError:
    if exc.field == "service" and "unsupported" in exc.message:
        return _invalid(exc.message.replace("unsupported service", "Unsupported service"))
    if exc.message == "is required":
        return _invalid(f"Field '{exc.field}' is required")
    return _invalid(f"Invalid field '{exc.field}': {exc.message}")


def _schema_name(service: str, config: dict[str, Any]) -> str:
    spec = get_service(service)
    keys = _SCHEMA_KEYS[spec.schema_format if spec else "schema"]
    return ".".join(str(config[k]) for k in keys if k in config)


async def _no_checker(service: str, token: Any) -> bool:
    raise RuntimeError("no token checker configured")


class Simulator:
    """State + handlers; :func:`create_simulator` wires them into a FastAPI app."""

    def __init__(
        self,
        *,
        get_http: Callable[[], httpx.AsyncClient],
        api_key: str,
        api_secret: str,
        token_checker: TokenChecker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        sync_seconds: float = 0.0,
    ) -> None:
        self.state = SimState()
        self.webhooks = WebhookDispatcher(self.state, get_http)
        self.checker: TokenChecker = token_checker or _no_checker
        self._api_key = api_key
        self._api_secret = api_secret
        self._sleep = sleep
        self.latency = SimulatedLatency()
        self.syncs = SyncClock(sync_seconds, self._finish_on_time)
        #: Called after the sync clock changed the state (persistence saves then).
        self.on_change: Callable[[], None] = lambda: None
        self.state_file: str | None = None  # set when the state is persisted

    # ------------------------------------------------------------------------------- plumbing

    def check_auth(self, request: Request) -> None:
        header = request.headers.get("authorization")
        if not header:
            raise SimError(401, "AuthFailed", "Missing authorization header")
        scheme, _, value = header.partition(" ")
        try:
            key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            key, secret = "", ""
        ok = scheme.lower() == "basic"
        ok = hmac.compare_digest(key.encode(), self._api_key.encode()) and ok
        ok = hmac.compare_digest(secret.encode(), self._api_secret.encode()) and ok
        if not ok:
            raise SimError(401, "AuthFailed", "Authorization failed: invalid API key or secret")

    @staticmethod
    def check_accept(request: Request) -> None:
        accept = request.headers.get("accept")
        if not accept:
            return
        for part in accept.split(","):
            media, *params = [p.strip() for p in part.split(";")]
            if media in ("*/*", "application/*"):
                return
            if media == "application/json":
                versions = [p.split("=", 1)[1] for p in params if p.startswith("version=")]
                if not versions or versions[0] in ("1", "2"):
                    return
        raise SimError(406, "NotAcceptable", f"Unsupported Accept header '{accept}'")

    @staticmethod
    async def body(request: Request, *, required: bool = True) -> Any:
        raw = await request.body()
        if not raw.strip():
            if required:
                raise _invalid("Request body is required")
            return None
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            raise SimError(415, "UnsupportedMediaType", "Content-Type must be application/json")
        try:
            return json.loads(raw)
        except ValueError:
            raise _invalid("Malformed JSON body") from None

    def page(self, request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        raw_limit = request.query_params.get("limit", "100")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _invalid("Invalid value of 'limit': must be an integer 1..1000") from None
        if not 1 <= limit <= 1000:
            raise _invalid("Invalid value of 'limit': must be between 1 and 1000")
        cursor = request.query_params.get("cursor")
        skip = 0
        if cursor:
            try:
                skip = decode_cursor(cursor)
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise _invalid("Invalid cursor") from None
        chunk = items[skip : skip + limit]
        data: dict[str, Any] = {"items": chunk}
        if skip + limit < len(items):
            data["next_cursor"] = encode_cursor(skip + limit)
        return data

    def find_fault(self, method: str, path: str) -> Fault | None:
        for fault in list(self.state.faults):
            if fault.method and fault.method.upper() not in (method, "*"):
                continue
            if not re.search(fault.path_regex, path):
                continue
            fault.count -= 1
            if fault.count <= 0:
                self.state.faults.remove(fault)
            return fault
        return None

    @staticmethod
    def fault_response(fault: Fault) -> Response:
        status = fault.status or 500
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        code = fault.code or _DEFAULT_CODES.get(status, "Error")
        return JSONResponse(
            {"code": code, "message": f"Injected fault ({status})"},
            status_code=status,
            headers=headers,
        )

    def log_request(
        self, request: Request, path: str, status: int, raw: bytes, fault: bool
    ) -> None:
        body: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = mask_secrets(parsed) if isinstance(parsed, dict) else parsed
                if isinstance(body, dict) and "secret" in body:
                    body["secret"] = "******"
            except ValueError:
                body = "<non-json>"
        self.state.requests.append(
            {
                "at": now_iso(),
                "method": request.method,
                "path": path,
                "query": str(request.url.query),
                "accept": request.headers.get("accept"),
                "status": status,
                "fault": fault,
                "body": body,
            }
        )

    # ------------------------------------------------------------------------------- views

    def conn(self, id: str) -> dict[str, Any]:
        connection = self.state.connections.get(id)
        if connection is None:
            raise _not_found("Integration", id)
        return connection

    def view(self, connection: dict[str, Any]) -> dict[str, Any]:
        out = mask_secrets({k: v for k, v in connection.items() if not k.startswith("_")})
        out["status"] = dict(connection["status"])
        return out

    def group(self, id: str) -> dict[str, Any]:
        group = self.state.groups.get(id)
        if group is None:
            raise _not_found("Group", id)
        return group

    def _sync_state(self, connection: dict[str, Any]) -> None:
        status = connection["status"]
        if status["sync_state"] == "syncing":
            return
        status["sync_state"] = "paused" if connection["paused"] else "scheduled"

    async def _run_tests(
        self, connection: dict[str, Any], *, trust_fingerprints: bool, trust_certificates: bool
    ) -> None:
        tests = await run_setup_tests(
            self.state,
            connection,
            checker=self.checker,
            trust_fingerprints=trust_fingerprints,
            trust_certificates=trust_certificates,
        )
        connection["setup_tests"] = tests
        status = connection["status"]
        before = status["setup_state"]
        if passed(tests):
            status["setup_state"] = "connected"
            status["tasks"] = [t for t in status["tasks"] if t.get("code") != "reconnect"]
            if before != "connected":
                self.webhooks.emit("connection_successful", connection)
        else:
            failed = next(t for t in tests if t["status"] in ("FAILED", "JOB_FAILED"))
            if before in ("connected", "broken"):
                status["setup_state"] = "broken"
                if before == "connected":
                    self.webhooks.emit(
                        "connection_failure", connection, {"reason": failed["message"]}
                    )
            else:
                status["setup_state"] = "incomplete"

    # ------------------------------------------------------------------------------- account

    async def account_info(self, request: Request) -> Response:
        return _ok(
            {"account_id": "sandbox_account", "account_name": "Sandbox", "user_id": "sandbox_user"}
        )

    # ------------------------------------------------------------------------------- groups

    async def create_group(self, request: Request) -> Response:
        body = await self.body(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not name:
            raise _invalid("Field 'name' is required")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid(
                "Invalid group name: use letters, digits and underscores, starting with a "
                "letter or underscore"
            )
        if any(g["name"] == name for g in self.state.groups.values()):
            raise SimError(409, "Conflict", f"Group with name '{name}' already exists")
        gid = new_word_id(self.state.groups)
        group = {"id": gid, "name": name, "created_at": now_iso()}
        self.state.groups[gid] = group
        return _ok(dict(group), "Group has been created", 201)

    async def list_groups(self, request: Request) -> Response:
        return _ok(self.page(request, [dict(g) for g in self.state.groups.values()]))

    async def get_group(self, request: Request) -> Response:
        return _ok(dict(self.group(request.path_params["group_id"])))

    async def patch_group(self, request: Request) -> Response:
        group = self.group(request.path_params["group_id"])
        body = await self.body(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid("Field 'name' is required and must be a valid name")
        group["name"] = name
        return _ok(dict(group), "Group has been updated")

    async def delete_group(self, request: Request) -> Response:
        gid = request.path_params["group_id"]
        self.group(gid)
        for cid in [c["id"] for c in self.state.connections.values() if c["group_id"] == gid]:
            self._drop_connection(cid)
        self.state.destinations.pop(gid, None)
        for wid in [w["id"] for w in self.state.webhooks.values() if w.get("group_id") == gid]:
            self.state.webhooks.pop(wid, None)
        del self.state.groups[gid]
        return _ok(message=f"Group with id '{gid}' has been deleted")

    async def group_connections(self, request: Request) -> Response:
        gid = request.path_params["group_id"]
        self.group(gid)
        schema = request.query_params.get("schema")
        items = [
            self.view(c)
            for c in self.state.connections.values()
            if c["group_id"] == gid and (schema is None or c["schema"] == schema)
        ]
        return _ok(self.page(request, items))

    async def group_public_key(self, request: Request) -> Response:
        gid = request.path_params["group_id"]
        self.group(gid)
        return _ok({"public_key": ssh_rsa_public_key(f"group:{gid}", "fivetran user key")})

    # ------------------------------------------------------------------------------- destinations

    async def create_destination(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
        for key in ("group_id", "service", "time_zone_offset"):
            if not body.get(key):
                raise _invalid(f"Field '{key}' is required")
        service = body["service"]
        if service not in destination_services():
            raise _invalid(f"Unsupported service '{service}'")
        gid = body["group_id"]
        self.group(gid)
        if gid in self.state.destinations:
            raise SimError(409, "Conflict", f"Destination for group '{gid}' already exists")
        config = body.get("config") or {}
        if not isinstance(config, dict):
            raise _invalid("Invalid field 'config': must be an object")
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
        self.state.destinations[gid] = destination
        return _ok(self._dest_view(destination), "Destination has been created", 201)

    def _dest_view(self, destination: dict[str, Any]) -> dict[str, Any]:
        return mask_secrets(dict(destination))

    def dest(self, id: str) -> dict[str, Any]:
        destination = self.state.destinations.get(id)
        if destination is None:
            raise _not_found("Destination", id)
        return destination

    async def get_destination(self, request: Request) -> Response:
        return _ok(self._dest_view(self.dest(request.path_params["destination_id"])))

    async def patch_destination(self, request: Request) -> Response:
        destination = self.dest(request.path_params["destination_id"])
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
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
                raise _invalid(f"Invalid field '{key}': unknown field")
        if "config" in body:
            if not isinstance(body["config"], dict):
                raise _invalid("Invalid field 'config': must be an object")
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
        return _ok(self._dest_view(destination), "Destination has been updated")

    async def delete_destination(self, request: Request) -> Response:
        did = request.path_params["destination_id"]
        self.dest(did)
        del self.state.destinations[did]
        return _ok(message=f"Destination with id '{did}' has been deleted")

    async def test_destination(self, request: Request) -> Response:
        destination = self.dest(request.path_params["destination_id"])
        await self.body(request, required=False)
        return _ok(self._dest_view(destination), "Setup tests have been completed")

    # ------------------------------------------------------------------------------- connections

    async def create_connection(self, request: Request) -> Response:
        body = await self.body(request)
        try:
            validate_create_payload(body)
        except PayloadError as exc:
            raise _payload_error(exc) from None
        gid = body["group_id"]
        self.group(gid)
        service = body["service"]
        spec = get_service(service)
        assert spec is not None
        config = dict(body["config"])
        schema = _schema_name(service, config)
        if any(
            c["group_id"] == gid and c["schema"] == schema for c in self.state.connections.values()
        ):
            raise SimError(
                409,
                "Conflict",
                f"Connection with schema '{schema}' already exists in group '{gid}'",
            )
        cid = new_word_id(self.state.connections)
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
            card = body["connect_card_config"]
            token = secrets.token_urlsafe(24)
            connection["connect_card_config"] = card
            connection["connect_card"] = {
                "token": token,
                "uri": "https://fivetran.com/connect-card/setup?"
                + urlencode(
                    {
                        "redirect_uri": card["redirect_uri"],
                        "auth": token,
                        "hide_setup_guide": str(bool(card.get("hide_setup_guide"))).lower(),
                    }
                ),
            }
        self.state.connections[cid] = connection
        if "auth" in body:
            self.state.auth[cid] = dict(body["auth"])
        self.webhooks.emit("create_connector", connection)
        if body.get("run_setup_tests", True):
            await self._run_tests(
                connection,
                trust_fingerprints=bool(body.get("trust_fingerprints", False)),
                trust_certificates=bool(body.get("trust_certificates", False)),
            )
        return _ok(self.view(connection), "Connection has been created", 201)

    async def list_connections(self, request: Request) -> Response:
        gid = request.query_params.get("group_id")
        schema = request.query_params.get("schema")
        items = [
            self.view(c)
            for c in self.state.connections.values()
            if (gid is None or c["group_id"] == gid) and (schema is None or c["schema"] == schema)
        ]
        return _ok(self.page(request, items))

    async def get_connection(self, request: Request) -> Response:
        return _ok(self.view(self.conn(request.path_params["connection_id"])))

    async def patch_connection(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request)
        try:
            validate_update_payload(connection["service"], body)
        except PayloadError as exc:
            raise _payload_error(exc) from None
        spec = get_service(connection["service"])
        assert spec is not None
        new_config = body.get("config") or {}
        for key in _SCHEMA_KEYS[spec.schema_format]:
            if key in new_config and new_config[key] != connection["config"].get(key):
                raise _invalid(f"Field 'config.{key}' cannot be changed")
        events: list[str] = []
        if "paused" in body and body["paused"] != connection["paused"]:
            connection["paused"] = body["paused"]
            if connection["status"]["sync_state"] != "syncing":
                connection["status"]["sync_state"] = "paused" if body["paused"] else "scheduled"
            events.append("pause_connector" if body["paused"] else "resume_connector")
            first_sync = not body["paused"] and self._never_synced(connection)
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
            self.state.auth[connection["id"]] = {
                **self.state.auth.get(connection["id"], {}),
                **body["auth"],
            }
            edited = True
        if edited:
            events.append("edit_connector")
        for event in events:
            self.webhooks.emit(event, connection)
        if first_sync:
            self._start_sync(connection)  # Fivetran starts the historical sync on first unpause
        run = body.get("run_setup_tests")
        if run is True or (run is None and ("config" in body or "auth" in body)):
            await self._run_tests(
                connection,
                trust_fingerprints=bool(body.get("trust_fingerprints", False)),
                trust_certificates=bool(body.get("trust_certificates", False)),
            )
        return _ok(self.view(connection), "Connection has been updated")

    def _drop_connection(self, cid: str) -> dict[str, Any]:
        connection = self.state.connections.pop(cid)
        for store in (
            self.state.auth,
            self.state.schema_configs,
            self.state.certificates,
            self.state.fingerprints,
            self.state.sync_ids,
        ):
            store.pop(cid, None)
        return connection

    async def delete_connection(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        connection = self._drop_connection(cid)
        self.webhooks.emit("delete_connector", connection)
        return _ok(message=f"Connection with id '{cid}' has been deleted")

    def _start_sync(self, connection: dict[str, Any]) -> str:
        sync_id = self.state.sync_ids.get(connection["id"])
        if connection["status"]["sync_state"] == "syncing" and sync_id:
            return sync_id
        sync_id = secrets.token_hex(16)
        sync_id = f"{sync_id[:8]}-{sync_id[8:12]}-{sync_id[12:16]}-{sync_id[16:20]}-{sync_id[20:]}"
        self.state.sync_ids[connection["id"]] = sync_id
        connection["status"]["sync_state"] = "syncing"
        self.webhooks.emit("sync_start", connection, sync_id=sync_id)
        self.syncs.arm(connection["id"], sync_id)
        return sync_id

    @staticmethod
    def _never_synced(connection: dict[str, Any]) -> bool:
        return (
            connection["status"]["setup_state"] == "connected"
            and connection["status"]["sync_state"] != "syncing"
            and connection["succeeded_at"] is None
            and connection["failed_at"] is None
        )

    def _finish_on_time(self, connection_id: str, sync_id: str) -> None:
        """The sync clock's finisher: ``sync_id`` ends SUCCESSFUL if it is still running."""
        connection = self.state.connections.get(connection_id)
        if (
            connection is None
            or self.state.sync_ids.get(connection_id) != sync_id
            or connection["status"]["sync_state"] != "syncing"
        ):
            return
        self.finish_sync(connection, "SUCCESSFUL")
        self.on_change()

    def finish_sync(
        self,
        connection: dict[str, Any],
        status: str,
        *,
        reason: str | None = None,
        task_type: str | None = None,
    ) -> None:
        """End the connection's sync with ``status`` and send ``sync_end`` (clock, control)."""
        sync_id = self._start_sync(connection)
        self.syncs.disarm(connection["id"])
        data: dict[str, Any] = {"status": status}
        if status == "SUCCESSFUL":
            connection["succeeded_at"] = now_iso()
            connection["status"]["is_historical_sync"] = False
            self._ensure_schema(connection)
        elif status == "RESCHEDULED":
            later = (datetime.now(UTC) + timedelta(hours=1)).isoformat(timespec="milliseconds")
            data["rescheduledAt"] = later.replace("+00:00", "Z")
            data["reason"] = reason or "Rate limit reached at the source"
        else:
            connection["failed_at"] = now_iso()
            data["reason"] = reason or "Simulated sync failure"
            data["taskType"] = task_type or "reconnect"
        connection["status"]["sync_state"] = "scheduled"
        connection["status"].pop("rescheduled_for", None)
        self._sync_state(connection)
        if status == "RESCHEDULED" and not connection["paused"]:
            connection["status"]["sync_state"] = "rescheduled"
            connection["status"]["rescheduled_for"] = data["rescheduledAt"]
        self.state.sync_ids.pop(connection["id"], None)
        self.webhooks.emit("sync_end", connection, data, sync_id=sync_id)

    async def sync(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        connection = self.conn(cid)
        body = await self.body(request, required=False)
        force = bool(body.get("force", False)) if isinstance(body, dict) else False
        if force:
            self.webhooks.emit("force_update_connector", connection)
            connection["status"]["sync_state"] = "scheduled"
        self._start_sync(connection)
        return _ok(message=f"Sync has been successfully triggered for connection with id '{cid}'")

    async def legacy_force(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        self.webhooks.emit("force_update_connector", connection)
        connection["status"]["sync_state"] = "scheduled"
        self._start_sync(connection)
        return _ok(message="Sync has been successfully triggered")

    async def resync(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request, required=False)
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
                raise _invalid("Invalid field 'scope': non-empty {schema: [tables]} required")
        if connection["status"]["sync_state"] == "syncing":
            raise SimError(409, "Conflict", "A sync is in progress and cannot be interrupted")
        if scope:
            self.webhooks.emit("resync_table", connection, {"scope": scope})
        else:
            connection["status"]["is_historical_sync"] = True
            self.webhooks.emit("resync_connector", connection)
        self._start_sync(connection)
        return _ok(message="Re-sync has been triggered successfully")

    async def test_connection(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
        for key in ("trust_certificates", "trust_fingerprints"):
            if key in body and not isinstance(body[key], bool):
                raise _invalid(f"Invalid field '{key}': must be a boolean")
        await self._run_tests(
            connection,
            trust_fingerprints=bool(body.get("trust_fingerprints", False)),
            trust_certificates=bool(body.get("trust_certificates", False)),
        )
        return _ok(self.view(connection), "Setup tests have been completed")

    # ------------------------------------------------------------------------------- schemas

    def _ensure_schema(self, connection: dict[str, Any]) -> dict[str, Any]:
        cid = connection["id"]
        if cid not in self.state.schema_configs:
            spec = get_service(connection["service"])
            self.state.schema_configs[cid] = generated_schema(
                connection["service"],
                spec.schema_format if spec else "schema",
                connection["schema"],
            )
        return self.state.schema_configs[cid]

    async def get_schemas(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        config = self.state.schema_configs.get(cid)
        if config is None:
            raise SimError(
                404,
                "NotFound_SchemaConfig",
                f"Cannot find entity 'StandardConfig' with id '{cid}': reload the schema first",
            )
        return _ok(config)

    async def reload_schemas(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request, required=False) or {}
        mode = body.get("exclude_mode", "PRESERVE") if isinstance(body, dict) else None
        if mode not in ("PRESERVE", "EXCLUDE"):
            raise _invalid("Invalid field 'exclude_mode': must be one of PRESERVE, EXCLUDE")
        config = self._ensure_schema(connection)
        return _ok(config, "Connection schema has been reloaded")

    async def patch_schemas(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        config = self.state.schema_configs.get(cid)
        if config is None:
            raise SimError(404, "NotFound_SchemaConfig", f"Cannot find schema config of '{cid}'")
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
        handling = body.get("schema_change_handling")
        if handling is not None:
            if handling not in ("ALLOW_ALL", "ALLOW_COLUMNS", "BLOCK_ALL"):
                raise _invalid(
                    "Invalid field 'schema_change_handling': must be one of ALLOW_ALL, "
                    "ALLOW_COLUMNS, BLOCK_ALL"
                )
            config["schema_change_handling"] = handling
            config["enable_new_by_default"] = handling == "ALLOW_ALL"
        schemas = body.get("schemas") or {}
        if not isinstance(schemas, dict):
            raise _invalid("Invalid field 'schemas': must be an object")
        for sname, sbody in schemas.items():
            target = config["schemas"].get(sname)
            if target is None:
                raise SimError(404, "NotFound", f"Schema '{sname}' not found")
            self._apply(target, sbody, f"schemas.{sname}")
            for tname, tbody in (sbody.get("tables") or {}).items():
                table = target["tables"].get(tname)
                if table is None:
                    raise SimError(404, "NotFound", f"Table '{sname}.{tname}' not found")
                self._apply(table, tbody, f"schemas.{sname}.tables.{tname}")
                if "sync_mode" in tbody:
                    if tbody["sync_mode"] not in ("SOFT_DELETE", "HISTORY", "LIVE"):
                        raise _invalid(f"Invalid field 'schemas.{sname}.tables.{tname}.sync_mode'")
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
                        raise _invalid(f"Field '{path}.enabled' cannot be changed")
                    self._apply(column, cbody, path, extra=("hashed", "is_primary_key"))
        return _ok(config, "Connection schema config has been updated")

    @staticmethod
    def _apply(target: dict[str, Any], patch: Any, path: str, extra: tuple[str, ...] = ()) -> None:
        if not isinstance(patch, dict):
            raise _invalid(f"Invalid field '{path}': must be an object")
        for key in ("enabled", *extra):
            if key in patch:
                if not isinstance(patch[key], bool):
                    raise _invalid(f"Invalid field '{path}.{key}': must be a boolean")
                target[key] = patch[key]

    # ------------------------------------------------------------------------------- certs

    async def list_certificates(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        items = list(self.state.certificates.get(cid, {}).values())
        return _ok(self.page(request, items))

    async def approve_certificate(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        body = await self.body(request)
        if not isinstance(body, dict) or not body.get("hash") or not body.get("encoded_cert"):
            raise _invalid("Fields 'hash' and 'encoded_cert' are required")
        try:
            der = base64.b64decode(body["encoded_cert"], validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("Invalid field 'encoded_cert': must be base64") from None
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
        self.state.certificates.setdefault(cid, {})[body["hash"]] = item
        return _ok(item, "The certificate has been approved", 201)

    async def list_fingerprints(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        return _ok(self.page(request, list(self.state.fingerprints.get(cid, {}).values())))

    async def approve_fingerprint(self, request: Request) -> Response:
        cid = request.path_params["connection_id"]
        self.conn(cid)
        body = await self.body(request)
        if not isinstance(body, dict) or not body.get("hash") or not body.get("public_key"):
            raise _invalid("Fields 'hash' and 'public_key' are required")
        item = {
            "id": body["hash"],
            "hash": body["hash"],
            "public_key": body["public_key"],
            "validated_by": "sandbox_user",
            "validated_date": now_iso(),
        }
        self.state.fingerprints.setdefault(cid, {})[body["hash"]] = item
        return _ok(item, "The fingerprint has been approved", 201)

    # ------------------------------------------------------------------------------- webhooks

    @staticmethod
    def _check_url(url: Any) -> None:
        if not isinstance(url, str) or not url:
            raise _invalid("Field 'url' is required")
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return
        if parts.scheme == "http" and parts.hostname in _LOOPBACK:
            return
        raise _invalid("Invalid field 'url': must be an HTTPS URL")

    @staticmethod
    def _check_events(events: Any) -> None:
        if not isinstance(events, list) or not events:
            raise _invalid("Field 'events' is required")
        for event in events:
            if event not in WEBHOOK_EVENTS:
                raise _invalid(f"Invalid field 'events': unknown event '{event}'")

    def _hook_view(self, hook: dict[str, Any]) -> dict[str, Any]:
        out = dict(hook)
        out["secret"] = "******" if self.state.webhook_secrets.get(hook["id"]) else None
        return out

    async def _create_webhook(self, request: Request, group_id: str | None) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
        self._check_url(body.get("url"))
        self._check_events(body.get("events"))
        active = body.get("active", True)
        if not isinstance(active, bool):
            raise _invalid("Invalid field 'active': must be a boolean")
        secret = body.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise _invalid("Invalid field 'secret': must be a string")
        wid = new_word_id(self.state.webhooks)
        hook: dict[str, Any] = {
            "id": wid,
            "type": "group" if group_id else "account",
            "url": body["url"],
            "events": list(body["events"]),
            "active": active,
            "created_at": now_iso(),
            "created_by": "sandbox_user",
        }
        if group_id:
            hook["group_id"] = group_id
        self.state.webhooks[wid] = hook
        self.state.webhook_secrets[wid] = secret
        return _ok(self._hook_view(hook), "Webhook has been created")

    async def create_account_webhook(self, request: Request) -> Response:
        return await self._create_webhook(request, None)

    async def create_group_webhook(self, request: Request) -> Response:
        gid = request.path_params["group_id"]
        self.group(gid)
        return await self._create_webhook(request, gid)

    def hook(self, wid: str) -> dict[str, Any]:
        hook = self.state.webhooks.get(wid)
        if hook is None:
            raise _not_found("Webhook", wid)
        return hook

    async def list_webhooks(self, request: Request) -> Response:
        return _ok(self.page(request, [self._hook_view(h) for h in self.state.webhooks.values()]))

    async def get_webhook(self, request: Request) -> Response:
        return _ok(self._hook_view(self.hook(request.path_params["webhook_id"])))

    async def patch_webhook(self, request: Request) -> Response:
        hook = self.hook(request.path_params["webhook_id"])
        body = await self.body(request)
        if not isinstance(body, dict):
            raise _invalid("Request body must be a JSON object")
        for key in body:
            if key not in ("url", "events", "active", "secret"):
                raise _invalid(f"Invalid field '{key}': unknown field")
        if "url" in body:
            self._check_url(body["url"])
            hook["url"] = body["url"]
        if "events" in body:
            self._check_events(body["events"])
            hook["events"] = list(body["events"])
        if "active" in body:
            if not isinstance(body["active"], bool):
                raise _invalid("Invalid field 'active': must be a boolean")
            hook["active"] = body["active"]
        if "secret" in body:
            self.state.webhook_secrets[hook["id"]] = body["secret"]
        return _ok(self._hook_view(hook), "Webhook has been updated")

    async def delete_webhook(self, request: Request) -> Response:
        wid = request.path_params["webhook_id"]
        self.hook(wid)
        del self.state.webhooks[wid]
        self.state.webhook_secrets.pop(wid, None)
        return _ok(message=f"Webhook with id '{wid}' has been deleted")

    async def test_webhook(self, request: Request) -> Response:
        hook = self.hook(request.path_params["webhook_id"])
        body = await self.body(request)
        event = body.get("event") if isinstance(body, dict) else None
        if event not in WEBHOOK_EVENTS:
            raise _invalid("Field 'event' is required and must be a webhook event")
        dummy = {
            "id": "_connection_1",
            "service": "_service_1",
            "schema": "_schema_1",
            "group_id": hook.get("group_id") or "_group_1",
        }
        data = {"status": "SUCCESSFUL"} if event == "sync_end" else {}
        result = await self.webhooks.deliver(hook["id"], event_payload(event, dummy, data))
        return _ok(result, "Webhook has been tested")

    # ------------------------------------------------------------------------------- control

    async def ctl_add_fault(self, request: Request) -> Response:
        body = await self.body(request)
        if not isinstance(body, dict) or not isinstance(body.get("path_regex"), str):
            raise _invalid("Field 'path_regex' is required")
        try:
            re.compile(body["path_regex"])
            fault = Fault(
                method=body.get("method"),
                path_regex=body["path_regex"],
                status=int(body["status"]) if body.get("status") is not None else None,
                count=int(body.get("count", 1)),
                retry_after=float(body["retry_after"])
                if body.get("retry_after") is not None
                else None,
                delay_seconds=float(body.get("delay_seconds") or 0),
                code=body.get("code"),
                after=bool(body.get("after", False)),
            )
        except (re.error, TypeError, ValueError) as exc:
            raise _invalid(f"Invalid fault: {exc}") from None
        self.state.faults.append(fault)
        return _ok({"faults": len(self.state.faults)}, "Fault added", 201)

    async def ctl_latency(self, request: Request) -> Response:
        try:
            seconds = self.latency.set(await self.body(request))
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        return _ok({"seconds": seconds}, "Latency set")

    async def ctl_clear_faults(self, request: Request) -> Response:
        self.state.faults.clear()
        return _ok(message="Faults cleared")

    async def ctl_sync_result(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request)
        status = body.get("status") if isinstance(body, dict) else None
        if status not in _SYNC_STATUSES:
            raise _invalid("Field 'status' must be one of " + ", ".join(sorted(_SYNC_STATUSES)))
        self.finish_sync(
            connection, status, reason=body.get("reason"), task_type=body.get("task_type")
        )
        return _ok(self.view(connection), "Sync result simulated")

    async def ctl_break(self, request: Request) -> Response:
        connection = self.conn(request.path_params["connection_id"])
        body = await self.body(request, required=False)
        reason = (body or {}).get("reason") if isinstance(body, dict) else None
        message = reason or "Reconnect: the credentials are invalid or were revoked"
        status = connection["status"]
        status["setup_state"] = "broken"
        if not any(t.get("code") == "reconnect" for t in status["tasks"]):
            status["tasks"].append({"code": "reconnect", "message": message})
        connection["failed_at"] = now_iso()
        self.webhooks.emit("connection_failure", connection, {"reason": message})
        return _ok(self.view(connection), "Connection broken")

    async def ctl_requests(self, request: Request) -> Response:
        return _ok({"items": list(self.state.requests)})

    async def ctl_deliveries(self, request: Request) -> Response:
        await self.webhooks.drain()
        return _ok({"items": list(self.state.deliveries)})

    async def ctl_drain(self, request: Request) -> Response:
        await self.webhooks.drain()
        return _ok(message="Webhook deliveries drained")

    async def ctl_state(self, request: Request) -> Response:
        state = self.state
        return _ok(
            {
                "groups": len(state.groups),
                "destinations": len(state.destinations),
                "connections": len(state.connections),
                "webhooks": len(state.webhooks),
                "syncing": sorted(state.sync_ids),
                "sync_seconds": self.syncs.seconds,
                "state_file": self.state_file,
            }
        )

    async def ctl_reset(self, request: Request) -> Response:
        await self.webhooks.drain()
        self.state.reset()
        return _ok(message="Simulator reset")


def create_simulator(
    *,
    get_http: Callable[[], httpx.AsyncClient],
    api_key: str = "sandbox_key",
    api_secret: str = "sandbox_secret",  # noqa: S107 - public sandbox value
    token_checker: TokenChecker | None = None,
    sync_seconds: float = 0.0,
) -> FastAPI:
    """Build the simulator app (a simulation of the Fivetran REST API).

    ``get_http`` returns the shared http client lazily (it exists only once the lifespan
    runs); ``token_checker(service, token) -> bool`` decides whether an OAuth token is active.
    ``sync_seconds > 0`` makes syncs finish by themselves (:mod:`.syncs`).
    The :class:`Simulator` is ``app.state.simulator``.
    """
    sim = Simulator(
        get_http=get_http,
        api_key=api_key,
        api_secret=api_secret,
        token_checker=token_checker,
        sync_seconds=sync_seconds,
    )
    app = FastAPI(
        title="Fivetran API simulator (sandbox)",
        description="A simulation of the Fivetran REST API for sandbox mode and tests.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.simulator = sim
    app.add_middleware(LatencyMiddleware, latency=sim.latency)  # type: ignore[arg-type]

    @app.exception_handler(SimError)
    async def _sim_error(request: Request, exc: SimError) -> Response:
        return JSONResponse(
            {"code": exc.code, "message": exc.message, "request_id": secrets.token_hex(8)},
            status_code=exc.status,
            headers=exc.headers,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "Error")
        return JSONResponse({"code": code, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.middleware("http")
    async def _gate(request: Request, call_next: Any) -> Response:
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        raw = await request.body()
        if path.startswith("/_control"):
            return await call_next(request)  # type: ignore[no-any-return]
        fault = sim.find_fault(request.method, path)
        response: Response
        try:
            if fault is not None and fault.delay_seconds and not fault.after:
                await sim._sleep(fault.delay_seconds)
            if fault is not None and not fault.after and fault.status:
                response = sim.fault_response(fault)
            else:
                sim.check_auth(request)
                sim.check_accept(request)
                response = await call_next(request)
                if fault is not None and fault.after and fault.delay_seconds:
                    # A slow answer to a processed request (the caller may die meanwhile).
                    await sim._sleep(fault.delay_seconds)
                if fault is not None and fault.after and fault.status:
                    response = sim.fault_response(fault)
        except SimError as exc:
            response = await _sim_error(request, exc)
        sim.log_request(request, path, response.status_code, raw, fault is not None)
        return response

    routes: list[tuple[str, str, Callable[[Request], Awaitable[Response]]]] = [
        ("GET", "/v1/account/info", sim.account_info),
        ("POST", "/v1/groups", sim.create_group),
        ("GET", "/v1/groups", sim.list_groups),
        ("GET", "/v1/groups/{group_id}", sim.get_group),
        ("PATCH", "/v1/groups/{group_id}", sim.patch_group),
        ("DELETE", "/v1/groups/{group_id}", sim.delete_group),
        ("GET", "/v1/groups/{group_id}/public-key", sim.group_public_key),
        ("POST", "/v1/destinations", sim.create_destination),
        ("GET", "/v1/destinations/{destination_id}", sim.get_destination),
        ("PATCH", "/v1/destinations/{destination_id}", sim.patch_destination),
        ("DELETE", "/v1/destinations/{destination_id}", sim.delete_destination),
        ("POST", "/v1/destinations/{destination_id}/test", sim.test_destination),
        ("POST", "/v1/webhooks/account", sim.create_account_webhook),
        ("POST", "/v1/webhooks/group/{group_id}", sim.create_group_webhook),
        ("GET", "/v1/webhooks", sim.list_webhooks),
        ("GET", "/v1/webhooks/{webhook_id}", sim.get_webhook),
        ("PATCH", "/v1/webhooks/{webhook_id}", sim.patch_webhook),
        ("DELETE", "/v1/webhooks/{webhook_id}", sim.delete_webhook),
        ("POST", "/v1/webhooks/{webhook_id}/test", sim.test_webhook),
        ("POST", "/_control/faults", sim.ctl_add_fault),
        ("DELETE", "/_control/faults", sim.ctl_clear_faults),
        ("POST", "/_control/latency", sim.ctl_latency),
        ("POST", "/_control/connections/{connection_id}/sync-result", sim.ctl_sync_result),
        ("POST", "/_control/connections/{connection_id}/break", sim.ctl_break),
        ("GET", "/_control/requests", sim.ctl_requests),
        ("GET", "/_control/deliveries", sim.ctl_deliveries),
        ("POST", "/_control/webhooks/drain", sim.ctl_drain),
        ("POST", "/_control/reset", sim.ctl_reset),
        ("GET", "/_control/state", sim.ctl_state),
    ]
    # The current family first, then the legacy /v1/connectors alias on the same handlers.
    for family in ("connections", "connectors"):
        base = f"/v1/{family}"
        one = base + "/{connection_id}"
        routes += [
            ("GET", f"/v1/groups/{{group_id}}/{family}", sim.group_connections),
            ("POST", base, sim.create_connection),
            ("GET", base, sim.list_connections),
            ("GET", one, sim.get_connection),
            ("PATCH", one, sim.patch_connection),
            ("DELETE", one, sim.delete_connection),
            ("POST", one + "/sync", sim.sync),
            ("POST", one + "/force", sim.legacy_force),
            ("POST", one + "/resync", sim.resync),
            ("POST", one + "/test", sim.test_connection),
            ("GET", one + "/schemas", sim.get_schemas),
            ("PATCH", one + "/schemas", sim.patch_schemas),
            ("POST", one + "/schemas/reload", sim.reload_schemas),
            ("GET", one + "/certificates", sim.list_certificates),
            ("POST", one + "/certificates", sim.approve_certificate),
            ("GET", one + "/fingerprints", sim.list_fingerprints),
            ("POST", one + "/fingerprints", sim.approve_fingerprint),
        ]
    for method, path, handler in routes:
        app.add_api_route(path, handler, methods=[method], include_in_schema=False)
    return app
