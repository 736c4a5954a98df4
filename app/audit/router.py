"""``GET /v1/audit`` (admin scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from app.audit.service import list_records, record_as_dict
from app.dependencies import AdminCaller, SessionDep

router = APIRouter(tags=["audit"])


class AuditPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


@router.get("/v1/audit", response_model=AuditPage, summary="The audit trail (admin)")
async def get_audit(
    session: SessionDep,
    caller: AdminCaller,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    end_user: Annotated[str | None, Query(max_length=200)] = None,
    target_id: Annotated[str | None, Query(max_length=200)] = None,
) -> AuditPage:
    """Who (API key, CLI or system, with the client IP) did what to which end-user,
    connection, API key or vault key, oldest first; ``next_cursor`` pages on."""
    rows, next_cursor = await list_records(
        session, cursor=cursor, limit=limit, end_user=end_user, target_id=target_id
    )
    return AuditPage(items=[record_as_dict(r) for r in rows], next_cursor=next_cursor)
