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
waits that long: :mod:`app.sandbox.latency`), ``POST /rate-limit`` ``{per_second, burst?}``
(429 + Retry-After above it: :mod:`app.sandbox.fivetran.ratelimit`).

Syncs finish by themselves after ``sync_seconds`` (:mod:`app.sandbox.fivetran.syncs`); the
state survives restarts of the sandbox server (:mod:`app.sandbox.persistence`).

Layout: :mod:`.simulator` (state and shared helpers) and one router module per resource
(:mod:`.groups`, :mod:`.connections`, :mod:`.schemas`, :mod:`.webhook_api`, :mod:`.control`),
included by :func:`create_simulator`.

Connect Card (the endpoint and a minimal, simulated card page):
:mod:`app.sandbox.fivetran.connect_card`.

Known deviations: no users/teams, transformations, metadata or sync-history
endpoints; webhooks are not test-called on creation; certificates are stored but no setup test
requires one.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.sandbox.fivetran import connect_card, connections, control, groups, schemas, webhook_api
from app.sandbox.fivetran.ratelimit import install_rate_limit
from app.sandbox.fivetran.setup_tests import TokenChecker
from app.sandbox.fivetran.simulator import SimError, Simulator
from app.sandbox.latency import LatencyMiddleware

__all__ = ["SimError", "Simulator", "create_simulator"]


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
    install_rate_limit(app)  # 429 + Retry-After under a configured limit (.ratelimit)

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
        if path.startswith(("/_control", connect_card.PUBLIC_PREFIX)):
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

    # One router per resource family, built once per process and included by reference;
    # handlers find ``sim`` through the request (``simulator_of``). A new simulated
    # resource: a module with ``router() -> APIRouter`` and one line here.
    app.include_router(groups.router())
    app.include_router(connections.router())
    app.include_router(schemas.router())
    app.include_router(webhook_api.router())
    app.include_router(control.router())
    app.include_router(connect_card.router())
    return app
