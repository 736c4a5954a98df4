"""Request-scoped dependencies shared by every router (``Annotated`` aliases)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

import httpx
from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller, authenticate, check_scope
from app.config import Settings
from app.db import session_scope
from app.state import AppState, app_state


async def get_state(request: Request) -> AppState:
    return app_state(request.app)


StateDep = Annotated[AppState, Depends(get_state)]


# The dependencies below read the app state from the request themselves instead of depending
# on ``StateDep``: every sub-dependency is one more node FastAPI analyses per route (at each
# app's first request) and solves per request.
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(app_state(request.app).sessionmaker):
        yield session


# async: FastAPI runs a plain ``def`` dependency in the thread pool (a thread hop per request).
async def get_settings(request: Request) -> Settings:
    return app_state(request.app).settings


async def get_http(request: Request) -> httpx.AsyncClient:
    return app_state(request.app).http


# scope="function": commit/rollback happens before the response is sent, so a client never
# sees a success whose transaction later failed.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
HttpDep = Annotated[httpx.AsyncClient, Depends(get_http)]


#: Attribute of the API-key dependency (the scope it requires). The OpenAPI document requires
#: ``bearerAuth`` on every operation that depends on it (:mod:`app.openapi_contract`), so a new
#: route cannot forget it; the header itself is read raw (``authenticate`` gives its own
#: problems for a missing or malformed key) and no security node is solved per request.
API_KEY_SCOPE = "pbf_api_key_scope"


def require_scope(scope: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    async def dependency(
        request: Request,
        session: SessionDep,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> Caller:
        cache_seconds = request.app.state.settings.api.key_cache_seconds
        caller = await authenticate(session, authorization, cache_seconds=cache_seconds)
        check_scope(caller, scope)
        client = request.client
        audit.set_actor(
            audit.Actor(
                type="api_key",
                id=caller.key_id,
                name=caller.name,
                client_ip=client.host if client else None,
            )
        )
        return caller

    setattr(dependency, API_KEY_SCOPE, scope)
    return dependency


ReadCaller = Annotated[Caller, Depends(require_scope("read"))]
WriteCaller = Annotated[Caller, Depends(require_scope("write"))]
AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]
