"""Shared core of the Fivetran API simulator — a **simulation** for sandbox mode and tests.

:class:`Simulator` holds the in-memory state (:class:`~app.sandbox.fivetran.state.SimState`),
the webhook dispatcher and the sync clock, plus the helpers every resource router uses:
Fivetran's ``{code, message, data}`` envelope (:func:`ok`), its error answers
(:class:`SimError`, :func:`not_found`, :func:`invalid`, :func:`payload_error`), request
plumbing and the sync lifecycle. What is simulated: :mod:`app.sandbox.fivetran.app`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.fivetran.index import get_service
from app.fivetran.payloads import PayloadError, mask_secrets
from app.sandbox.fivetran.setup_tests import TokenChecker, passed, run_setup_tests
from app.sandbox.fivetran.state import (
    Fault,
    SimState,
    decode_cursor,
    encode_cursor,
    generated_schema,
    now_iso,
)
from app.sandbox.fivetran.syncs import SyncClock
from app.sandbox.fivetran.webhooks import WebhookDispatcher
from app.sandbox.latency import SimulatedLatency

Handler = Callable[[Request], Awaitable[Response]]

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
SCHEMA_KEYS = {
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


def ok(data: Any = None, message: str = "Success", status: int = 200, code: str = "Success"):
    body: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return JSONResponse(body, status_code=status)


def not_found(entity: str, id: str, code: str | None = None) -> SimError:
    return SimError(
        404, code or f"NotFound_{entity}", f"Cannot find entity '{entity}' with id '{id}'"
    )


def invalid(message: str) -> SimError:
    return SimError(400, "InvalidInput", message)


def payload_error(exc: PayloadError) -> SimError:
    if exc.field == "service" and "unsupported" in exc.message:
        return invalid(exc.message.replace("unsupported service", "Unsupported service"))
    if exc.message == "is required":
        return invalid(f"Field '{exc.field}' is required")
    return invalid(f"Invalid field '{exc.field}': {exc.message}")


def schema_name(service: str, config: dict[str, Any]) -> str:
    spec = get_service(service)
    keys = SCHEMA_KEYS[spec.schema_format if spec else "schema"]
    return ".".join(str(config[k]) for k in keys if k in config)


async def _no_checker(service: str, token: Any) -> bool:
    raise RuntimeError("no token checker configured")


class Simulator:
    """The simulator's state and what every resource router shares.

    Request plumbing (auth, ``Accept``, JSON bodies, paging, faults, the request log), lookups
    that answer Fivetran's 404s, setup tests, and the sync lifecycle. The routers of
    :mod:`.groups`, :mod:`.connections`, :mod:`.schemas`, :mod:`.webhook_api` and
    :mod:`.control` hold the handlers; :func:`app.sandbox.fivetran.app.create_simulator`
    includes them.
    """

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
                raise invalid("Request body is required")
            return None
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("application/json"):
            raise SimError(415, "UnsupportedMediaType", "Content-Type must be application/json")
        try:
            return json.loads(raw)
        except ValueError:
            raise invalid("Malformed JSON body") from None

    def page(self, request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        raw_limit = request.query_params.get("limit", "100")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise invalid("Invalid value of 'limit': must be an integer 1..1000") from None
        if not 1 <= limit <= 1000:
            raise invalid("Invalid value of 'limit': must be between 1 and 1000")
        cursor = request.query_params.get("cursor")
        skip = 0
        if cursor:
            try:
                skip = decode_cursor(cursor)
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise invalid("Invalid cursor") from None
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
            raise not_found("Integration", id)
        return connection

    def view(self, connection: dict[str, Any]) -> dict[str, Any]:
        out = mask_secrets({k: v for k, v in connection.items() if not k.startswith("_")})
        out["status"] = dict(connection["status"])
        return out

    def group(self, id: str) -> dict[str, Any]:
        group = self.state.groups.get(id)
        if group is None:
            raise not_found("Group", id)
        return group

    def settle_sync_state(self, connection: dict[str, Any]) -> None:
        status = connection["status"]
        if status["sync_state"] == "syncing":
            return
        status["sync_state"] = "paused" if connection["paused"] else "scheduled"

    async def run_tests(
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

    # ------------------------------------------------------------------- connections and syncs

    def drop_connection(self, cid: str) -> dict[str, Any]:
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

    def start_sync(self, connection: dict[str, Any]) -> str:
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
    def never_synced(connection: dict[str, Any]) -> bool:
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
        sync_id = self.start_sync(connection)
        self.syncs.disarm(connection["id"])
        data: dict[str, Any] = {"status": status}
        if status == "SUCCESSFUL":
            connection["succeeded_at"] = now_iso()
            connection["status"]["is_historical_sync"] = False
            self.ensure_schema(connection)
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
        self.settle_sync_state(connection)
        if status == "RESCHEDULED" and not connection["paused"]:
            connection["status"]["sync_state"] = "rescheduled"
            connection["status"]["rescheduled_for"] = data["rescheduledAt"]
        self.state.sync_ids.pop(connection["id"], None)
        self.webhooks.emit("sync_end", connection, data, sync_id=sync_id)

    def ensure_schema(self, connection: dict[str, Any]) -> dict[str, Any]:
        cid = connection["id"]
        if cid not in self.state.schema_configs:
            spec = get_service(connection["service"])
            self.state.schema_configs[cid] = generated_schema(
                connection["service"],
                spec.schema_format if spec else "schema",
                connection["schema"],
            )
        return self.state.schema_configs[cid]


def simulator_of(request: Request) -> Simulator:
    """The simulator of the app serving ``request`` (``app.state.simulator``): the routers
    are built once per process and shared by every simulator app."""
    sim: Simulator = request.app.state.simulator
    return sim


def routes_router(routes: list[tuple[str, str, Handler]]) -> APIRouter:
    """An :class:`APIRouter` of ``(method, path, handler)`` rows, hidden from any schema."""
    router = APIRouter()
    for method, path, handler in routes:
        router.add_api_route(path, handler, methods=[method], include_in_schema=False)
    return router
