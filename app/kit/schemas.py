"""Bases of request bodies (unknown fields are a 422, never silently dropped) and of answers
built from stored rows (text that cannot be encoded is replaced)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from starlette.responses import Response

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


def json_answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` (already validated) as the JSON body, serialised once by pydantic.

    A route that returns a model has FastAPI dump it, validate the dump against the
    ``response_model`` again and serialise that; for a hot read (a status read, a list of
    connections) that is most of the request's CPU. A route returning this keeps its
    ``response_model`` for the API document; the bytes are the same (aliases, compact JSON,
    UTF-8)."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json"
    )
