"""Typed Fivetran API errors, keyed on HTTP status and Fivetran's ``code``.

Hierarchy (all carry ``status``, ``code``, ``message``, ``request_id``; none carries a request
body, a header or any secret)::

    FivetranError
    ├── FivetranInvalidInput      400 (InvalidInput, BadRequest, …)
    ├── FivetranAuthFailed        401 (AuthFailed)
    ├── FivetranForbidden         403
    ├── FivetranNotFound          404 (NotFound, NotFound_*)
    ├── FivetranConflict          409 (Conflict)
    ├── FivetranTooManyRequests   429 (TooManyRequests; also the client-side budget) .retry_after
    ├── FivetranServerError       5xx after the allowed retries
    ├── FivetranUnavailable       transport error / timeout after the allowed retries
    └── FivetranAmbiguous         a non-idempotent create whose outcome is unknown

``FivetranAmbiguous`` means: the create was sent, and we cannot tell whether Fivetran processed
it (timeout, 5xx or a broken connection after sending). It is never re-sent blindly; the caller
resolves it with ``FivetranClient.find_connection(group_id, schema)``.

The one mapping of Fivetran failures to our problems is :meth:`FivetranError.as_app_error`
(through :func:`fivetran_problem`): 400/422 → 422 ``fivetran_rejected``, 409 → 409
``fivetran_conflict``, 429 → 429 with ``Retry-After``, 5xx/transport/ambiguous → 503, any
other status (401, 403, 404 where not handled) → 502 ``fivetran_error``.
"""

from __future__ import annotations

from app.errors import AppError, Conflict, InvalidInput, ServiceUnavailable, UpstreamError
from app.errors import TooManyRequests as AppTooManyRequests


class FivetranError(Exception):
    """A Fivetran API call failed. ``status`` is Fivetran's HTTP status (0 = no response)."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        request_id: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status = status
        self.code = code or ""
        self.message = message
        self.request_id = request_id
        self.method = method
        self.path = path
        where = f" ({method} {path})" if method and path else ""
        rid = f" [request_id={request_id}]" if request_id else ""
        super().__init__(f"Fivetran {status} {self.code}: {message}{where}{rid}")

    def as_app_error(self) -> AppError:
        """Our problem-details error for a request that failed because of Fivetran."""
        return UpstreamError(
            f"Fivetran rejected the request: {self.code or self.status}: {self.message}",
            code="fivetran_error",
            fivetran_status=self.status,
            fivetran_code=self.code,
        )


class FivetranInvalidInput(FivetranError):
    """400 — the request was rejected as invalid (``InvalidInput`` / ``BadRequest``)."""

    def as_app_error(self) -> AppError:
        return InvalidInput(
            f"Fivetran rejected the request: {self.message}", code="fivetran_rejected"
        )


class FivetranAuthFailed(FivetranError):
    """401 — the API key/secret were refused."""


class FivetranForbidden(FivetranError):
    """403 — the key lacks a permission."""


class FivetranNotFound(FivetranError):
    """404 — ``NotFound`` or any ``NotFound_*`` code (the entity is gone)."""


class FivetranConflict(FivetranError):
    """409 — ``Conflict`` (e.g. a duplicate schema in a group, a resync during a sync)."""

    def as_app_error(self) -> AppError:
        return Conflict(f"Fivetran refused: {self.message}", code="fivetran_conflict")


class FivetranTooManyRequests(FivetranError):
    """429 — rate limited; ``retry_after`` seconds (None if Fivetran did not say)."""

    def __init__(self, *args: object, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after

    def as_app_error(self) -> AppError:
        headers = {"Retry-After": str(int(self.retry_after))} if self.retry_after else None
        return AppTooManyRequests(
            "Fivetran rate limit reached; retry later.",
            code="fivetran_rate_limited",
            headers=headers,
        )


class FivetranBudgetExhausted(FivetranTooManyRequests):
    """Our own hourly request budget is used up (no request was sent)."""


class FivetranServerError(FivetranError):
    """5xx from Fivetran after the allowed retries."""

    def as_app_error(self) -> AppError:
        return ServiceUnavailable("Fivetran is failing; retry later.", code="fivetran_unavailable")


class FivetranUnavailable(FivetranError):
    """No usable response: transport error or timeout after the allowed retries."""

    def as_app_error(self) -> AppError:
        return ServiceUnavailable(
            "Fivetran is unreachable; retry later.", code="fivetran_unavailable"
        )


class FivetranAmbiguous(FivetranError):
    """A create was sent but its outcome is unknown; look it up, never re-send blindly."""

    def as_app_error(self) -> AppError:
        return ServiceUnavailable(
            "The Fivetran create may or may not have happened; retry resolves it.",
            code="fivetran_ambiguous",
        )


_BY_STATUS: dict[int, type[FivetranError]] = {
    400: FivetranInvalidInput,
    401: FivetranAuthFailed,
    403: FivetranForbidden,
    404: FivetranNotFound,
    409: FivetranConflict,
    422: FivetranInvalidInput,
}


def error_for(
    status: int,
    code: str | None,
    message: str,
    request_id: str | None,
    *,
    method: str | None = None,
    path: str | None = None,
    retry_after: float | None = None,
) -> FivetranError:
    """The typed error for a final (non-retried) error response."""
    kw = {"method": method, "path": path}
    if status == 429:
        return FivetranTooManyRequests(
            status, code, message, request_id, retry_after=retry_after, **kw
        )
    if status >= 500:
        return FivetranServerError(status, code, message, request_id, **kw)
    if code and code.startswith("NotFound"):
        return FivetranNotFound(status, code, message, request_id, **kw)
    cls = _BY_STATUS.get(status, FivetranError)
    return cls(status, code, message, request_id, **kw)


def fivetran_problem(exc: BaseException) -> AppError:
    """Our problem for a failed Fivetran call (a non-Fivetran error counts as unreachable; a
    problem we already decided on, e.g. a missing group, is kept)."""
    if isinstance(exc, AppError):
        return exc
    if isinstance(exc, FivetranError):
        return exc.as_app_error()
    return ServiceUnavailable("Fivetran is unreachable; retry later.", code="fivetran_unavailable")
