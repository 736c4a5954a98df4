"""Who am I: lets a caller check its key, scopes and end-user restriction."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.dependencies import ReadCaller

router = APIRouter(prefix="/v1", tags=["callers"])


class CallerOut(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    end_user_prefix: str | None


@router.get("/me", response_model=CallerOut, summary="The calling API key")
async def me(caller: ReadCaller) -> CallerOut:
    return CallerOut(
        key_id=caller.key_id,
        name=caller.name,
        scopes=sorted(caller.scopes),
        end_user_prefix=caller.end_user_prefix,
    )
