"""Bases of request bodies (unknown fields are a 422, never silently dropped) and of answers
built from stored rows (text that cannot be encoded is replaced)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from app.input_guard import scrub


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScrubbedOut(BaseModel):
    """An answer built from stored rows: text that cannot be encoded is replaced, so one bad
    row never fails a response or a list."""

    @model_validator(mode="before")
    @classmethod
    def _scrub(cls, data: Any) -> Any:
        return scrub(data)
