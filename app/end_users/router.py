"""HTTP endpoints of end-users: create/update, read, list (offboarding is in connections)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app.dependencies import ReadCaller, SessionDep, StateDep, WriteCaller
from app.end_users import service as end_user_service
from app.end_users.schemas import EndUserOut, EndUserPage, EndUserPut
from app.end_users.service import DestinationRequest
from app.kit.pagination import PageLimit
from app.kit.problems import API_PROBLEMS

router = APIRouter(prefix="/v1", responses=API_PROBLEMS)


@router.put(
    "/end-users/{external_id}",
    response_model=EndUserOut,
    tags=["end-users"],
    responses={200: {"description": "Updated"}, 201: {"description": "Created"}},
)
async def put_end_user(
    external_id: str,
    body: EndUserPut,
    state: StateDep,
    response: Response,
    session: SessionDep,
    caller: WriteCaller,
) -> EndUserOut:
    """Create or update an end-user (idempotent) and ensure the Fivetran group (and
    destination) its group strategy requires."""
    destination = (
        DestinationRequest(
            service=body.destination.service,
            time_zone_offset=body.destination.time_zone_offset,
            region=body.destination.region,
            config=body.destination.config,
        )
        if body.destination
        else None
    )
    row, created = await end_user_service.upsert_end_user(
        session,
        fivetran=state.fivetran,
        settings=state.settings,
        caller=caller,
        external_id=external_id,
        name=body.name,
        destination=destination,
    )
    response.status_code = 201 if created else 200
    return EndUserOut.of(row)


@router.get("/end-users/{external_id}", response_model=EndUserOut, tags=["end-users"])
async def get_end_user(external_id: str, session: SessionDep, caller: ReadCaller) -> EndUserOut:
    """One end-user (404 for unknown, deleted and foreign ones)."""
    return EndUserOut.of(await end_user_service.get_end_user(session, caller, external_id))


@router.get("/end-users", response_model=EndUserPage, tags=["end-users"])
async def list_end_users(
    session: SessionDep,
    caller: ReadCaller,
    cursor: str | None = None,
    limit: PageLimit = 100,
) -> EndUserPage:
    """End-users visible to this key, by external id (cursor-paginated)."""
    rows, next_cursor = await end_user_service.list_end_users(
        session, caller=caller, cursor=cursor, limit=limit
    )
    return EndUserPage(items=[EndUserOut.of(r) for r in rows], next_cursor=next_cursor)
