"""HTTP endpoints of the sources catalog."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.dependencies import ReadCaller, StateDep
from app.kit.pagination import PageLimit, decode_cursor, encode_cursor
from app.kit.problems import API_PROBLEMS
from app.sources.schemas import AuthMethod, SourceList, SourceOut

router = APIRouter(prefix="/v1", responses=API_PROBLEMS)

#: Listing order of one service's ways (the catalog lists them so).
_WAY_RANK = {"oauth2": 0, "oauth1": 1, "credentials": 2, "connect_card": 3}


@router.get("/sources", response_model=SourceList, tags=["sources"])
async def get_sources(
    state: StateDep,
    caller: ReadCaller,
    category: str | None = None,
    auth_method: AuthMethod | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    cursor: str | None = None,
    limit: PageLimit = 1000,
) -> SourceList:
    """Every Fivetran service this deployment can onboard headlessly, with form schemas, one
    item per way (``auth_method``); filter by ``category``, ``auth_method`` and search ``q``
    (service or display name). The default page holds the whole catalog."""
    after = decode_cursor(cursor, "after", str)
    # In listing order: by service, the preferred way first (a consent flow: oauth2 or oauth1,
    # then credentials, then card). " " sorts before every service-name character and, unlike
    # NUL, is valid cursor text.
    key = lambda s: f"{s.service} {_WAY_RANK.get(s.auth_method, 9)}"  # noqa: E731
    listed = state.sources.list(category=category, auth_method=auth_method, query=q)
    sources = [s for s in listed if after is None or key(s) > after]
    page = sources[:limit]
    next_cursor = encode_cursor("after", key(page[-1])) if len(sources) > limit else None
    return SourceList(items=[SourceOut(**s.public()) for s in page], next_cursor=next_cursor)


@router.get("/sources/{service}", response_model=SourceOut, tags=["sources"])
async def get_one_source(
    service: str, state: StateDep, caller: ReadCaller, auth_method: AuthMethod | None = None
) -> SourceOut:
    """One source (its preferred way, or ``auth_method``); 404 for unknown or not enabled."""
    return SourceOut(**state.sources.get(service, auth_method).public())
