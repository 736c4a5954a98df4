"""HTTP endpoints of the sources catalog."""

from __future__ import annotations

from fastapi import APIRouter

from app.dependencies import ReadCaller, StateDep
from app.kit.pagination import PageLimit, decode_cursor, encode_cursor
from app.kit.problems import API_PROBLEMS
from app.sources.schemas import SourceList, SourceOut

router = APIRouter(prefix="/v1", responses=API_PROBLEMS)


@router.get("/sources", response_model=SourceList, tags=["sources"])
async def get_sources(
    state: StateDep,
    caller: ReadCaller,
    cursor: str | None = None,
    limit: PageLimit = 1000,
) -> SourceList:
    """Every Fivetran service this deployment can onboard headlessly, with form schemas
    (by service name; the default page holds the whole catalog)."""
    after = decode_cursor(cursor, "after", str)
    sources = [s for s in state.sources.list() if after is None or s.service > after]
    page = sources[:limit]
    next_cursor = encode_cursor("after", page[-1].service) if len(sources) > limit else None
    return SourceList(items=[SourceOut(**s.public()) for s in page], next_cursor=next_cursor)


@router.get("/sources/{service}", response_model=SourceOut, tags=["sources"])
async def get_one_source(service: str, state: StateDep, caller: ReadCaller) -> SourceOut:
    """One source; 404 for unknown or not enabled."""
    return SourceOut(**state.sources.get(service).public())
