"""Server processes freeze their start-up heap (``create_app(freeze_heap=True)``); apps built
and dropped in one process (tests, the CLI) do not."""

from __future__ import annotations

import gc

from app.config import Settings
from app.main import create_app


async def test_a_server_app_freezes_its_startup_heap_and_a_test_app_does_not(
    settings: Settings,
) -> None:
    gc.unfreeze()
    try:
        plain = create_app(settings)
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0
        served = create_app(settings, freeze_heap=True)
        async with served.router.lifespan_context(served):
            # the app, its routes and its lifespan state are among the frozen objects
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
