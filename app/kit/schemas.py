"""Base of request bodies: unknown fields are a 422, never silently dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
