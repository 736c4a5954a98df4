"""Domain errors that carry their HTTP meaning, rendered as RFC 9457 problem details.

Raise a subclass of :class:`AppError` from services; one handler turns it into
``application/problem+json`` with ``type``, ``title``, ``status``, ``detail`` and a stable
machine ``code``. Validation errors (422), unknown routes (404), wrong methods (405) and
unhandled exceptions (500, no internals) get the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pbf.errors")

PROBLEM_TYPE_BASE = "https://pbf-headless.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class AppError(Exception):
    """Base of every expected failure. Subclasses set ``status``, ``code`` and ``title``."""

    status: int = 400
    code: str = "bad_request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.title
        if code is not None:
            self.code = code
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"


class InvalidInput(AppError):
    """Semantically invalid input (a field is wrong); ``field`` names it when known."""

    status, code, title = 422, "invalid_input", "Invalid input"


def invalid_fields(errors: list[dict[str, str]], *, code: str = "invalid_config") -> InvalidInput:
    """One 422 naming every offending field: ``errors: [{field, code, message}]`` in the
    problem body; ``field`` and ``code`` are the first error's (one error) or the shared code
    (all alike), else ``code``."""
    codes = {e["code"] for e in errors}
    shared = codes.pop() if len(codes) == 1 else code
    if len(errors) == 1:
        detail = errors[0]["message"]
    else:
        detail = f"{len(errors)} fields are invalid: " + "; ".join(e["message"] for e in errors)
    return InvalidInput(
        detail, code=shared, field=errors[0]["field"] if errors else None, errors=errors
    )


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        headers = kw.pop("headers", None) or {}
        headers.setdefault("WWW-Authenticate", 'Bearer realm="pbf-headless"')
        super().__init__(detail, headers=headers, **kw)


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"


class Gone(AppError):
    status, code, title = 410, "gone", "Gone"


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class TooManyRequests(AppError):
    status, code, title = 429, "too_many_requests", "Too many requests"


class UpstreamError(AppError):
    """A counterpart (Fivetran, a source app) failed in a way we cannot hide."""

    status, code, title = 502, "upstream_error", "Upstream service error"


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    429: ("too_many_requests", "Too many requests"),
}


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        # Never echo the offending input back: it may be a secret.
        out.append(
            {
                "field": ".".join(loc),
                "code": err.get("type", "invalid"),
                "message": err.get("msg", "invalid"),
                "type": err.get("type", ""),
            }
        )
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(
            exc.to_problem(),
            status_code=exc.status,
            headers=exc.headers or None,
            media_type=PROBLEM_MEDIA_TYPE,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        first = errors[0]["field"] if errors else "body"
        return problem_response(
            422,
            "validation_error",
            "Request validation failed",
            f"Invalid value for '{first}'" if errors else "Invalid request",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route for {request.method} {request.url.path}"
        if exc.status_code == 405 and detail == "Method Not Allowed":
            detail = f"Method {request.method} is not allowed on {request.url.path}"
        return problem_response(
            exc.status_code, code, title, detail, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # Log the type only; reprs of httpx/DB errors can carry secrets (R16).
        log.error(
            "unhandled error",
            extra={"error_type": type(exc).__name__, "path": request.url.path},
        )
        rid = getattr(request.state, "request_id", None)
        return problem_response(
            500,
            "internal_error",
            "Internal server error",
            "The server failed to handle the request. Quote the X-Request-ID when reporting it.",
            headers={"X-Request-ID": rid} if rid else None,
        )
