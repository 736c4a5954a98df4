"""API models of the end-user endpoints (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.end_users.models import EndUser
from app.kit.schemas import ScrubbedOut, StrictIn

# --- end-users ---------------------------------------------------------------------------


class DestinationIn(StrictIn):
    """The end-user's own destination (instead of the configured template)."""

    service: str = Field(min_length=1, max_length=100, examples=["snowflake"])
    region: str | None = Field(None, max_length=100)
    time_zone_offset: str = Field("0", pattern=r"^(?:[+-]?(?:[0-9]|1[0-2]))$")
    config: dict[str, Any] = Field(default_factory=dict)


class EndUserPut(StrictIn):
    name: str | None = Field(None, max_length=200)
    destination: DestinationIn | None = None


class OffboardingOut(BaseModel):
    state: str
    error: str | None = None


class EndUserOut(ScrubbedOut):
    external_id: str
    name: str | None
    status: Literal["active", "offboarding", "deleted"]
    group_strategy: str
    fivetran_group_id: str | None
    destination: dict[str, Any] | None
    offboarding: OffboardingOut | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: EndUser) -> EndUserOut:
        status: Literal["active", "offboarding", "deleted"] = "active"
        if row.deleted_at is not None:
            status = "deleted"
        elif row.offboarding_state is not None:
            status = "offboarding"
        return cls(
            external_id=row.external_id,
            name=row.name,
            status=status,
            group_strategy=row.group_strategy,
            fivetran_group_id=row.fivetran_group_id,
            destination=row.destination,
            offboarding=OffboardingOut(state=row.offboarding_state, error=row.offboarding_error)
            if row.offboarding_state
            else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class EndUserPage(BaseModel):
    items: list[EndUserOut]
    next_cursor: str | None


class SshPublicKeyOut(BaseModel):
    public_key: str
    group_id: str
