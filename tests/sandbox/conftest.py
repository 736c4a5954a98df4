"""Fixtures of the sandbox tests: the real app over ASGI with sandbox settings of the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings

CONTROL = "/sandbox/fivetran/_control"
SIM_AUTH = ("sandbox_key", "sandbox_secret")


async def eventually(
    probe: Callable[[], Awaitable[Any]], *, what: str, attempts: int = 400, pause: float = 0.05
) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded; not a timing assertion)."""
    for _ in range(attempts):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(pause)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def make_api(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[tuple[FastAPI, httpx.AsyncClient]]]]:
    """``await make_api(**settings)`` → the running app and an admin client on it."""
    from app.callers.service import create_api_key
    from app.main import create_app

    async with AsyncExitStack() as stack:

        async def make(**overrides: Any) -> tuple[FastAPI, httpx.AsyncClient]:
            application = create_app(settings_factory(**overrides))
            await stack.enter_async_context(application.router.lifespan_context(application))
            async with application.state.sessionmaker() as s, s.begin():
                _, key = await create_api_key(s, name="t", scopes=["admin"])
            client = await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=application),
                    base_url="http://127.0.0.1:8000",
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            return application, client

        yield make
