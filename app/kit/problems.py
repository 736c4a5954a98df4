"""Problem-details responses the ``/v1`` resource routes document (RFC 9457, stable ``code``)."""

from __future__ import annotations

from typing import Any


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {}}}


API_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or invalid API key."),
    403: _problem("The API key lacks the scope."),
    404: _problem("Unknown, deleted or foreign (outside the key's end-users) resource."),
    409: _problem("Conflicting state (idempotency key reused, offboarding in progress, …)."),
    413: _problem("Request body too large."),
    422: _problem("Invalid input; ``field`` names the offending field."),
    429: _problem("Fivetran rate limit; honour ``Retry-After``."),
    503: _problem("Fivetran unavailable; retry (with the same Idempotency-Key)."),
}
