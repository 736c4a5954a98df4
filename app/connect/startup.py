"""Lifespan hook of the connect flow: the periodic sweep that closes expired and interrupted
sessions."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack
from datetime import timedelta

from fastapi import FastAPI

from app.config import Settings
from app.connect.recovery import settle_interrupted_sessions
from app.connect.service import expire_stale_sessions
from app.db import session_scope
from app.state import app_state

log = logging.getLogger("pbf.connect")


async def sweep_once(app: FastAPI) -> int:
    """One sweep in its own transaction; returns the number of sessions closed (expired, or
    settled after an interrupted callback or a revoked key)."""
    count = 0
    async for session in session_scope(app_state(app).sessionmaker):
        count = await expire_stale_sessions(session, app_state(app))
        grace = timedelta(seconds=app_state(app).settings.connect.callback_grace_seconds)
        count += await settle_interrupted_sessions(session, app_state(app), grace=grace)
    return count


async def _loop(app: FastAPI, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_once(app)
        except Exception as exc:  # keep sweeping; the next run retries
            log.warning("connect session sweep failed", extra={"error_type": type(exc).__name__})


def start_connect(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    """Start the expiry sweep (unless ``connect.expiry_sweep_seconds`` is 0)."""
    interval = settings.connect.expiry_sweep_seconds
    if interval <= 0:
        return
    task = asyncio.get_running_loop().create_task(_loop(app, interval), name="connect-sweep")

    async def _stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(_stop)
