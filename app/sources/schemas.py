"""API models of the sources endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

# --- sources -----------------------------------------------------------------------------


class SourceOut(BaseModel):
    service: str
    name: str
    auth_method: Literal["oauth2", "credentials"]
    config_schema: dict[str, Any]
    scopes: list[str] | None = None


class SourceList(BaseModel):
    items: list[SourceOut]
    next_cursor: str | None = None
