"""The sandbox counterparts in their own process: ``pbf-headless sandbox-counterparties``.

Both counterparts are **simulations** (sandbox mode only, never production): the Fivetran
simulator (:mod:`app.sandbox.fivetran`) at ``/sandbox/fivetran`` and the sandbox OAuth
authorization server (:mod:`app.sandbox.oauth`) at ``/sandbox/oauth``. By default they are
mounted in the ``serve --sandbox`` process; :func:`create_counterparties_app` serves them —
and nothing else: no database, no ``/v1`` API — from a process of their own, so that

* the service can be stopped, restarted or SIGKILLed while "Fivetran" and the "provider"
  keep their state and keep answering (the crash tests of ``make reliability`` do this), and
* ``serve --workers N`` can run in sandbox mode, every worker reaching the same counterparts.

Configure both sides with the same environment: ``PBF_SANDBOX__COUNTERPARTIES_URL`` is where
this process listens (the service sends its Fivetran calls and its sandboxed providers' OAuth
there), ``PBF_PUBLIC_BASE_URL`` is the service's address (the sandbox OAuth server's redirect
URIs; the service registers its own webhook URL at the simulator). With ``sandbox.persist``
(on by default for the command) the state survives a restart of this process too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from app.config import Settings
from app.kit.transport import build_client, build_transport
from app.observability import Metrics
from app.providers.startup import start_providers
from app.sandbox.fivetran import mount_fivetran_simulator
from app.sandbox.oauth import mount_sandbox_oauth
from app.sandbox.startup import start_sandbox
from app.state import AppState

log = logging.getLogger("pbf.sandbox")

TITLE = "pbf-headless sandbox counterparties (simulated Fivetran and OAuth provider)"


def create_counterparties_app(settings: Settings) -> FastAPI:
    """The simulator and the sandbox OAuth server as one app (see module doc). No I/O here."""
    if not settings.is_sandbox:
        raise ValueError("the sandbox counterparties run in sandbox mode only")
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Our own base URL is served in-process (the simulator's setup tests introspect
            # tokens at the sandbox OAuth server); everything else (webhooks) goes out.
            transport = build_transport(
                metrics, loopback_prefix=settings.sandbox_base_url, loopback_app=app
            )
            stack.push_async_callback(transport.shutdown)
            http = build_client(transport)
            stack.push_async_callback(http.aclose)
            app.state.http = http
            app.state.outbound_transport = transport
            await start_sandbox(app, settings, stack)
            await start_providers(app, settings)
            log.info("sandbox counterparties ready at %s", settings.sandbox_base_url)
            yield

    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    state = AppState()
    state.settings = settings
    state.metrics = metrics
    state.readiness_checks = {}
    state.sandbox_mounted = True
    app.state = state

    app.add_api_route("/healthz", healthz, methods=["GET"])
    mount_fivetran_simulator(app)
    mount_sandbox_oauth(app)
    return app


async def healthz() -> dict[str, str]:
    """Liveness of the counterparties process."""
    return {"status": "ok"}
