"""The typed application state: what the lifespan builds and services depend on.

``create_app`` installs an :class:`AppState` as ``app.state``; the lifespan fills it (engine,
sessionmaker, the shared httpx client, provider registry, Fivetran client, vault, sources
catalog). Routers get it through :data:`app.dependencies.StateDep`; services receive it (or
one of its collaborators) as an argument. Nothing here is a module global.

It stays a Starlette ``State`` (attribute access, what ``request.app.state`` is) with every
collaborator declared, so mypy and readers see who depends on what.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.datastructures import State

from app.config import Settings
from app.fivetran.client import FivetranClient
from app.observability import Metrics
from app.providers.registry import ProviderRegistry
from app.vault import Vault

if TYPE_CHECKING:  # a type only: the catalog's package also holds routes (which import us)
    from app.sources.catalog import SourceCatalog

ReadinessProbe = Callable[[], Awaitable[tuple[bool, str]]]


class AppState(State):
    """``app.state`` of the API, typed. Set at app creation: ``settings``, ``metrics``,
    ``readiness_checks``; set by the lifespan: the rest."""

    settings: Settings
    metrics: Metrics
    readiness_checks: dict[str, ReadinessProbe]
    #: The sandbox apps are mounted in this app (the sandbox server, not a worker/CLI app).
    sandbox_mounted: bool
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    #: The transport under ``http`` (metrics, sandbox loopback); tests read its counters.
    outbound_transport: httpx.AsyncBaseTransport
    providers: ProviderRegistry
    sources: SourceCatalog
    fivetran: FivetranClient
    vault: Vault
    #: Connections whose clear secrets (older rows) the startup moved to the vault.
    secrets_vaulted: int


def app_state(app: FastAPI) -> AppState:
    """The typed state of an app built by :func:`app.main.create_app`."""
    state = app.state
    if not isinstance(state, AppState):
        raise TypeError("not an app built by app.main.create_app")
    return state
