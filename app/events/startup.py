"""Lifespan wiring of the events domain: the worker inside the API process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from fastapi import FastAPI

from app.config import Settings
from app.events.metrics import EventsMetrics
from app.events.registration import ensure_webhook
from app.events.worker import EventsWorker, Reconciler
from app.fivetran.client import FivetranClient

log = logging.getLogger("pbf.events")


async def start_events(
    app: FastAPI, settings: Settings, stack: AsyncExitStack, *, reconciler: Reconciler | None = None
) -> EventsWorker:
    """Create ``app.state.events_worker``; start its loops when ``run_worker_in_api``.

    The worker always exists (tests drive ``await app.state.events_worker.run_once()``);
    only the background task depends on the setting. Stopped when the lifespan ends.
    """
    app.state.events_metrics = EventsMetrics(app.state.metrics.registry)
    worker = EventsWorker(
        settings=settings,
        sessionmaker=app.state.sessionmaker,
        http=app.state.http,
        reconciler=reconciler,
        metrics=app.state.events_metrics,
    )
    app.state.events_worker = worker
    if settings.events.run_worker_in_api:
        worker.start()
        stack.push_async_callback(worker.stop)
        app.state.readiness_checks["events_worker"] = worker.readiness
    if settings.events.register_webhook_on_startup:
        fivetran: FivetranClient = app.state.fivetran
        task = asyncio.create_task(_register_webhook(fivetran, settings))
        stack.push_async_callback(_cancel, task)
    return worker


async def _register_webhook(fivetran: FivetranClient, settings: Settings) -> None:
    """Background: register/update the Fivetran webhook (failures are logged, not fatal)."""
    try:
        result = await ensure_webhook(fivetran, settings)
    except Exception as exc:
        log.warning(
            "could not register the Fivetran webhook", extra={"error_type": type(exc).__name__}
        )
        return
    log.info(
        "fivetran webhook registered",
        extra={"action": result.action, "webhook_id": result.webhook_id, "url": result.url},
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
