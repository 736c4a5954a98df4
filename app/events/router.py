"""HTTP routes of the events domain (thin: one service call each)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from app.dependencies import AdminCaller, ReadCaller, SessionDep, SettingsDep, WriteCaller
from app.events import service
from app.events.receivers import configured_endpoints
from app.events.schemas import (
    EventEndpointList,
    EventList,
    EventOut,
    RedeliverRequest,
)

router = APIRouter(tags=["events"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.get("/v1/events", response_model=EventList, responses={400: _PROBLEM, 422: _PROBLEM})
async def list_events(
    session: SessionDep,
    caller: ReadCaller,
    connection_id: str | None = None,
    end_user: str | None = None,
    type: Annotated[str | None, Query(description="Event type, e.g. connection.broken")] = None,
    status: Annotated[str | None, Query(description="pending | delivered | dead | skipped")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EventList:
    """Outbound events, oldest first (cursor-paginated). Keys restricted to an end-user
    prefix see only their end-users' events."""
    items, next_cursor = await service.list_events(
        session,
        caller=caller,
        connection_id=connection_id,
        end_user=end_user,
        kind=type,
        status=status,
        cursor=cursor,
        limit=limit,
    )
    return EventList(items=items, next_cursor=next_cursor)


@router.get("/v1/events/{event_id}", response_model=EventOut, responses={404: _PROBLEM})
async def get_event(session: SessionDep, caller: ReadCaller, event_id: str) -> EventOut:
    """One event with its delivery state per endpoint."""
    return await service.get_event(session, caller=caller, event_id=event_id)


@router.post(
    "/v1/events/{event_id}/redeliver",
    response_model=EventOut,
    status_code=202,
    responses={404: _PROBLEM, 422: _PROBLEM},
)
async def redeliver_event(
    session: SessionDep,
    settings: SettingsDep,
    caller: WriteCaller,
    event_id: str,
    body: Annotated[RedeliverRequest | None, Body()] = None,
) -> EventOut:
    """Queue an event again (all its endpoints, or ``endpoint_id``); delivered by the worker
    with the same ``PBF-Event-Id``."""
    return await service.redeliver(
        session,
        caller=caller,
        endpoints=configured_endpoints(settings),
        event_id=event_id,
        endpoint_id=body.endpoint_id if body else None,
    )


@router.get("/v1/event-endpoints", response_model=EventEndpointList)
async def list_event_endpoints(
    session: SessionDep, settings: SettingsDep, caller: AdminCaller
) -> EventEndpointList:
    """Configured outbound endpoints with their backlog. Secrets are never returned."""
    items = await service.list_endpoints(session, configured_endpoints(settings))
    return EventEndpointList(items=items)
