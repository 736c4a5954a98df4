"""Lifespan wiring of the events domain: the worker inside the API process."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from app.config import Settings
from app.events.worker import EventsWorker


async def start_events(app: Any, settings: Settings, stack: AsyncExitStack) -> EventsWorker:
    """Create ``app.state.events_worker``; start its loops when ``run_worker_in_api``.

    The worker always exists (tests drive ``await app.state.events_worker.run_once()``);
    only the background task depends on the setting. Stopped when the lifespan ends.
    """
    worker = EventsWorker(
        settings=settings,
        sessionmaker=app.state.sessionmaker,
        http=app.state.http,
        app_state=app.state,
    )
    app.state.events_worker = worker
    if settings.events.run_worker_in_api:
        worker.start()
        stack.push_async_callback(worker.stop)
    return worker
