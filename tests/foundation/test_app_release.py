"""An app that is built, started, used and dropped is garbage: nothing process-wide (FastAPI's
endpoint caches, the catalog, logging) keeps it alive. The suite builds hundreds of apps in one
process; when endpoints closed over their app, every one of them stayed in memory."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.sandbox.counterparties import create_counterparties_app


async def _use(app: object) -> None:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/healthz", "/docs", "/redoc", "/_control/rate-limit"):
            await client.get(path)


@pytest.mark.parametrize("factory", [create_app, create_counterparties_app])
async def test_a_dropped_app_is_collected(
    settings: Settings, factory: Callable[[Settings], FastAPI]
) -> None:
    """The service in sandbox mode, and the counterparties app of ``serve --sandbox``."""
    app = factory(settings)
    async with app.router.lifespan_context(app):
        await _use(app)
    ref = weakref.ref(app)
    del app
    gc.collect()
    assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
