"""Fixtures of the sandbox tests: the real app over ASGI with sandbox settings of the test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

CONTROL = "/sandbox/fivetran/_control"
SIM_AUTH = ("sandbox_key", "sandbox_secret")


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, what: str, attempts: int = 1200, pause: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded; not a timing assertion)."""
    for _ in range(attempts):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(pause)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def make_api(make_app_client: Any) -> Any:
    """``await make_api(**settings)`` → the running app and an admin client on it."""
    return make_app_client
