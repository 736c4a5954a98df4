"""App factory and lifespan.

``create_app(settings)`` builds the FastAPI app without doing any I/O; the lifespan creates
the engine, the shared httpx client, the vault's key material and the background workers,
and tears them down. Nothing is built at import time.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from fastapi import FastAPI

from app import ops
from app.api_docs import install_api_docs
from app.audit.router import router as audit_router
from app.callers.router import router as callers_router
from app.config import Settings, load_settings, production_problems
from app.connect.card_router import browser_router as card_browser_router
from app.connect.card_router import router as card_router
from app.connect.pages import refusal_page_renderer
from app.connect.ratelimit import BROWSER_PREFIXES, BrowserRateLimitMiddleware
from app.connect.router import reauthorize_router
from app.connect.router import router as connect_router
from app.connect.startup import start_connect
from app.connections.reconcile import reconciler
from app.connections.router import router as connections_router
from app.connections.startup import start_onboarding
from app.connections.webhook_router import router as webhook_router
from app.db import count_statements, create_engine, create_sessionmaker
from app.end_users.router import router as end_users_router
from app.errors import install_error_handlers
from app.events.router import router as events_router
from app.events.startup import start_events
from app.fivetran.startup import start_fivetran
from app.input_guard import InputGuardMiddleware
from app.kit.transport import build_client, build_transport
from app.observability import (
    Metrics,
    PoolCollector,
    RequestContextMiddleware,
    install_record_factory,
)
from app.openapi_contract import install_openapi
from app.providers.startup import start_providers
from app.sandbox.demo import mount_sandbox_demo
from app.sandbox.fivetran import mount_fivetran_simulator
from app.sandbox.oauth import mount_sandbox_oauth
from app.sandbox.startup import start_sandbox
from app.sources.catalog import SourceCatalog
from app.sources.router import router as sources_router
from app.state import AppState, app_state
from app.vault.startup import start_vault

log = logging.getLogger("pbf.main")

API_DESCRIPTION = """
Headless "Powered by Fivetran" onboarding: your own screens, our OAuth consent and token
exchange, an encrypted token vault, and the Fivetran connection lifecycle.

All `/v1` routes take `Authorization: Bearer <api key>`. Errors are RFC 9457 problem details
with a stable `code`.
"""


class ConfigurationError(RuntimeError):
    """The settings cannot run in the selected mode; ``problems`` lists every item."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def create_app(
    settings: Settings | None = None,
    *,
    outbound_transport: httpx.AsyncBaseTransport | None = None,
    include_sandbox: bool | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the app. ``outbound_transport`` replaces the network for tests.

    ``freeze_heap`` (the server processes: ``serve``, each ``serve --workers N`` worker): once
    started, move everything built so far — modules, routes, the provider catalog — out of
    the cyclic garbage collector's sight (``gc.freeze``), so its collections during requests
    scan only what requests allocate; they rescanned the whole long-lived heap, about a third
    of a status read's CPU. Not for apps built and dropped in one process (tests): frozen
    objects are never collected."""
    settings = settings or load_settings()
    problems = production_problems(settings)
    if problems:
        raise ConfigurationError(problems)

    install_record_factory()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            await _startup(app, settings, metrics, outbound_transport, stack)
            if freeze_heap:
                gc.collect()
                gc.freeze()
            yield

    app = FastAPI(
        title="pbf-headless",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # A redirect built from the Host header is an open redirect; clients use exact paths.
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    install_api_docs(app)
    state = AppState()
    state.settings = settings
    state.metrics = metrics
    state.readiness_checks = {}
    app.state = state
    install_error_handlers(app)
    sandbox = settings.is_sandbox if include_sandbox is None else include_sandbox
    _include_routers(app, sandbox, counterparts=sandbox and not settings.counterparties_elsewhere)
    app.add_middleware(
        InputGuardMiddleware,  # type: ignore[arg-type]
        page_prefixes=BROWSER_PREFIXES,
        page=refusal_page_renderer(settings.branding),
    )
    app.add_middleware(BrowserRateLimitMiddleware, settings=settings)  # type: ignore[arg-type]
    install_openapi(app)
    app.add_middleware(
        RequestContextMiddleware,  # type: ignore[arg-type]
        metrics=metrics,
        max_body_bytes=settings.api.max_body_bytes,
    )
    return app


def _include_routers(app: FastAPI, sandbox: bool, *, counterparts: bool) -> None:
    # Domain routers are added here, one line each, busiest first: every request walks the
    # included routers in this order until one matches (no two share a path and a method,
    # so the order changes nothing but the cost). Probes first (three exact paths, a cheap
    # miss), then status reads.
    app.include_router(ops.router)
    app.include_router(connections_router)
    app.include_router(callers_router)
    app.include_router(end_users_router)
    app.include_router(webhook_router)
    app.include_router(events_router)
    app.include_router(connect_router)
    app.include_router(sources_router)
    app.include_router(reauthorize_router)
    app.include_router(card_router)
    app.include_router(card_browser_router)
    app.include_router(audit_router)
    app_state(app).sandbox_mounted = counterparts
    if sandbox:
        _mount_sandbox(app, counterparts=counterparts)


def _mount_sandbox(app: FastAPI, *, counterparts: bool) -> None:
    """Sandbox counterparts (simulated; never in production mode)."""
    # Mounted by the sandbox packages: /sandbox/fivetran, /sandbox/oauth and /sandbox/demo.
    # With sandbox.counterparties_url the first two run in their own process instead.
    if counterparts:
        mount_fivetran_simulator(app)
        mount_sandbox_oauth(app)
    mount_sandbox_demo(app)


async def _startup(
    app: FastAPI,
    settings: Settings,
    metrics: Metrics,
    outbound_transport: httpx.AsyncBaseTransport | None,
    stack: AsyncExitStack,
) -> None:
    if settings.effective_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        settings.effective_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        sqlite_cache_kib=settings.db_sqlite_cache_kib,
    )
    stack.push_async_callback(engine.dispose)
    app.state.engine = engine
    app.state.sessionmaker = create_sessionmaker(engine)
    metrics.add_collector(PoolCollector(lambda: engine.pool))
    count_statements(engine, metrics.db_statements.inc)

    # Our own base URL is served in-process only where the sandbox lives; a sandbox-mode
    # app without it (worker, resume) reaches the sandbox server over HTTP.
    in_process = settings.is_sandbox and app.state.sandbox_mounted
    transport = build_transport(
        metrics,
        base_transport=outbound_transport,
        loopback_prefix=settings.public_base_url if in_process else None,
        loopback_app=app if in_process else None,
    )
    stack.push_async_callback(transport.shutdown)  # last: the pool outlives its clients
    http = build_client(transport)
    stack.push_async_callback(http.aclose)
    app.state.http = http
    app.state.outbound_transport = transport

    # Domain components start here (vault keys, Fivetran client, workers), one call each.
    await start_sandbox(app, settings, stack)  # before anything talks to the simulator
    await start_providers(app, settings)
    app_state(app).sources = SourceCatalog(app_state(app).providers, settings)
    stack.push_async_callback(start_fivetran(app, settings).aclose)
    await start_vault(app, settings)
    await start_events(app, settings, stack, reconciler=reconciler(app_state(app)))
    await start_onboarding(app, settings, stack)
    start_connect(app, settings, stack)
