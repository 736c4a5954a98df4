"""Logging, request ids, redaction and Prometheus metrics.

Redaction (oauth-security.md R16) is a logging filter installed on the root handler and on
uvicorn's loggers: every record's final message and every extra field pass through
:func:`redact` before any handler formats them, so OAuth ``code``/``state``/``iss`` (and
OAuth 1.0a ``oauth_token``/``oauth_verifier``/``denied``) query values, bearer tokens and
anything token-, secret- or password-like never reach a log line — including uvicorn's access
log, which prints the path with its query string.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "pbf_request_id", default=None
)

REDACTED = "[REDACTED]"
_SENSITIVE_WORDS = (
    r"[A-Za-z0-9_\-]*(?:token|secret|password|passwd|verifier|api_key|apikey|private_key"
    r"|client_assertion|signature|hmac|authorization|cookie)[A-Za-z0-9_\-]*"
)
# Callback parameters that name the consenting account (personal data, never logged).
_ACCOUNT_PARAMS = r"realmId|selling_partner_id|shop"
_SENSITIVE_PARAM = (
    rf"(?:code|state|iss|auth_code|session_state|denied|{_ACCOUNT_PARAMS}|{_SENSITIVE_WORDS})"
)
# key=value in query strings / form bodies / free text. An unquoted value runs to the next
# '&' or whitespace: codes are 1*VSCHAR (RFC 6749 A.11), so ',', ';' and quotes may be in it.
_KV_RE = re.compile(rf"(?i)(?<![A-Za-z0-9_])({_SENSITIVE_PARAM})=(?:'[^']*'|\"[^\"]*\"|[^&\s]+)")
# "key": "value" in JSON-ish text
_JSON_RE = re.compile(rf"(?i)([\"']{_SENSITIVE_PARAM}[\"']\s*:\s*)([\"'])(.*?)(?<!\\)\2")
_BEARER_RE = re.compile(r"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+")
_KEY_RE = re.compile(r"\bpbf_[A-Za-z0-9]+_[A-Za-z0-9_\-]{20,}")
# Single-use connect start tokens travel in the path: /connect/<token>
_CONNECT_PATH_RE = re.compile(r"(/connect/)[A-Za-z0-9_\-]{16,}")
_SENSITIVE_KEY_RE = re.compile(rf"(?i)^{_SENSITIVE_PARAM}$")


def _may_hold_secret(text: str) -> bool:
    """False only when none of the patterns below can match: each needs a literal '=', ':',
    'pbf_', '/connect/' or the word Bearer/Basic (most log lines, e.g. an access line without
    a query string, have none and skip the five substitutions)."""
    if "=" in text or ":" in text or "pbf_" in text or "/connect/" in text:
        return True
    lower = text.lower()
    return "bearer" in lower or "basic" in lower


def redact(text: str) -> str:
    """Remove secret-looking values from free text (query strings, JSON, headers)."""
    if not text or not _may_hold_secret(text):
        return text
    # JSON pairs first: an unquoted key=value below may run over a following JSON key.
    text = _JSON_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}{m.group(2)}", text)
    text = _KV_RE.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _CONNECT_PATH_RE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return _KEY_RE.sub(REDACTED, text)


# ``code``/``state``/``iss`` as *extra* keys usually hold our own vocabulary (a Fivetran
# error code "NotFound_Integration", a connection state "creating"): such identifier-like
# values stay readable; anything else under these keys (an OAuth code, a state value) is
# redacted. Identifiers here have no digits, random credentials practically always do.
_AMBIGUOUS_KEY_RE = re.compile(r"(?i)^(?:code|state|iss)$")
_IDENTIFIER_RE = re.compile(r"^[A-Za-z][A-Za-z_.\-]{0,63}\Z")


def redact_value(key: str, value: Any) -> Any:
    if _AMBIGUOUS_KEY_RE.match(key) and isinstance(value, str) and _IDENTIFIER_RE.match(value):
        return value
    if _SENSITIVE_KEY_RE.match(key):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    return value


_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class RedactionFilter(logging.Filter):
    """Rewrites each record in place so no handler can see the raw values."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not crash logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception messages can embed request bodies; keep the type, redact the text.
            exc = record.exc_info[1]
            record.exc_text = f"{type(exc).__name__}: {redact(str(exc))}"
            record.exc_info = None
        for key in list(record.__dict__):
            if key not in _STD_ATTRS:
                record.__dict__[key] = redact_value(key, record.__dict__[key])
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


_factory_installed = False


def install_record_factory() -> None:
    """Redact every record's message at creation, so *every* handler (pytest's caplog
    included) sees only redacted text. Extras are redacted by :class:`RedactionFilter`."""
    global _factory_installed
    if _factory_installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and value is not None:
                out[key] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """One plain line per record for people (the sandbox default): local time, then
    ``GET /v1/sources 200 12.3ms`` for a request, ``LEVEL logger: message`` otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        message = record.getMessage()
        duration = getattr(record, "duration_ms", None)
        if record.name == access_log.name and duration is not None:
            line = f"{ts} {message} {duration}ms"
        else:
            line = f"{ts} {record.levelname:<7} {record.name}: {message}"
        if record.exc_text:
            line += f" ({record.exc_text})"
        return line


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners and CLIs swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(
    level: str = "INFO", *, json_lines: bool = True, stream: Any = None
) -> logging.Handler:
    """Route every logger (ours, uvicorn's, httpx's, authlib's) through one redacting handler."""
    install_record_factory()
    handler: logging.StreamHandler[Any] = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_pbf", False):
            root.removeHandler(old)
    handler._pbf = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    install_redaction_everywhere()
    # authlib logs the PKCE verifier at DEBUG (R16): keep it at INFO or above.
    logging.getLogger("authlib").setLevel(max(logging.INFO, root.level))
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpcore").setLevel(max(logging.WARNING, root.level))
    return handler


def install_redaction_everywhere() -> None:
    """Attach the filter to every existing handler and to uvicorn's loggers themselves."""
    flt = RedactionFilter()
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactionFilter) for f in logger.filters):
            logger.addFilter(flt)
        for h in logger.handlers:
            if not any(isinstance(f, RedactionFilter) for f in h.filters):
                h.addFilter(flt)


def uvicorn_log_config(level: str, json_lines: bool) -> dict[str, Any]:
    """A uvicorn ``log_config`` whose handlers redact (used by ``pbf-headless serve``)."""
    fmt = "app.observability.JsonFormatter" if json_lines else "app.observability.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "app.observability.RedactionFilter"}},
        "formatters": {"default": {"()": fmt}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": level.upper(), "propagate": False},
        },
    }


# --------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """Prometheus metrics on a registry of their own (one per app instance)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "pbf_http_requests_total",
            "HTTP requests served.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "pbf_http_request_duration_seconds",
            "HTTP request latency.",
            ["route", "method"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.outbound = Counter(
            "pbf_outbound_requests_total",
            "Outbound HTTP calls.",
            ["target", "status"],
            registry=self.registry,
        )
        self.outbound_latency = Histogram(
            "pbf_outbound_request_duration_seconds",
            "Outbound HTTP call latency.",
            ["target"],
            registry=self.registry,
        )
        self.events = Counter(
            "pbf_domain_events_total",
            "Domain events by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.db_statements = Counter(
            "pbf_db_statements_total",
            "SQL statements sent to the database (round-trips; BEGIN/COMMIT not included).",
            registry=self.registry,
        )
        self.info = Gauge("pbf_up", "1 while the service runs.", registry=self.registry)
        self.info.set(1)

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)


class PoolCollector(Collector):
    """Reports the SQLAlchemy pool of an engine (checked out, idle, overflow, size)."""

    def __init__(self, get_pool: Callable[[], Pool]) -> None:
        self._get_pool = get_pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pool = self._get_pool()
        g = GaugeMetricFamily("pbf_db_pool_connections", "DB pool connections.", labels=["state"])
        for state, fn in (
            ("checked_out", "checkedout"),
            ("idle", "checkedin"),
            ("overflow", "overflow"),
            ("size", "size"),
        ):
            f = getattr(pool, fn, None)
            if callable(f):
                try:
                    g.add_metric([state], float(f()))
                except Exception:  # noqa: S112 - pool kinds without that figure
                    continue
        yield g


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Counts every outbound call by target and status.

    The target label is ``request.extensions["pbf_target"]`` when the caller sets it
    (``fivetran``, ``oauth:<provider>``, ``webhook``), else the host.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = str(request.extensions.get("pbf_target") or request.url.host or "unknown")
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            self._metrics.outbound.labels(target, type(exc).__name__).inc()
            raise
        finally:
            self._metrics.outbound_latency.labels(target).observe(time.perf_counter() - started)
        self._metrics.outbound.labels(target, str(response.status_code)).inc()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


# --------------------------------------------------------------------------------------------
# Request context middleware (pure ASGI)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._\-]{1,128}\Z")
access_log = logging.getLogger("pbf.access")


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return str(path)
    # Mounted sub-apps and unmatched paths: keep the label set bounded.
    raw = scope.get("path", "")
    if raw.startswith("/sandbox/"):
        return "/sandbox/" + raw.split("/")[2] + "/*"
    return "unmatched"


def _new_request_id() -> str:
    return f"{random.getrandbits(96):024x}"


class RequestContextMiddleware:
    """Request id (accept/return ``X-Request-ID``), access log, metrics, body-size cap."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # Labelled metric children by (route, method, status): labels() locks and validates.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for k, v in scope.get("headers", []):
            if k == b"x-request-id":
                incoming = v.decode("latin-1")
                break
        # Request ids need uniqueness, not secrecy: no os.urandom system call per request.
        rid = incoming if incoming and _REQUEST_ID_RE.match(incoming) else _new_request_id()
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status_holder = {"status": 500}
        over_cap = False  # set when a streamed (chunked) body passed the cap

        async def send_wrapper(message: Message) -> None:
            if over_cap:
                # The app caught our exception while reading the body (FastAPI answers 400):
                # whatever it answers is replaced by the 413 once.
                if message["type"] == "http.response.start" and status_holder["status"] != 413:
                    status_holder["status"] = 413
                    await _send_too_large(send, self.max_body_bytes)
                return
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            nonlocal over_cap
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    over_cap = True
                    raise _BodyTooLarge()
            return message

        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                await _send_too_large(send_wrapper, self.max_body_bytes)
                return
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except _BodyTooLarge:
                if status_holder["status"] != 413:
                    status_holder["status"] = 413
                    await _send_too_large(send, self.max_body_bytes)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope.get("method", "")
            status = status_holder["status"]
            children = self._children.get((route, method, status))
            if children is None:
                children = (
                    self.metrics.http_requests.labels(route, method, str(status)),
                    self.metrics.http_latency.labels(route, method),
                )
                if len(self._children) < 1000:  # methods come from clients: stay bounded
                    self._children[(route, method, status)] = children
            children[0].inc()
            children[1].observe(elapsed)
            query = _bounded(scope.get("query_string", b"").decode("latin-1"), MAX_LOGGED_QUERY)
            access_log.info(
                "%s %s%s %s",
                method,
                _bounded(str(scope.get("path", "")), MAX_LOGGED_PATH),
                f"?{query}" if query else "",
                status,
                extra={
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "route": route,
                    "request_id": rid,
                },
            )
            request_id_var.reset(token)


#: The access line keeps this much of a path / query string (a 14 KB URL is not logged).
MAX_LOGGED_PATH = 512
MAX_LOGGED_QUERY = 512


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more chars]"


class _BodyTooLarge(Exception):
    pass


def _content_length(scope: Scope) -> int | None:
    for k, v in scope.get("headers", []):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "type": "https://pbf-headless.dev/problems/payload_too_large",
            "title": "Payload too large",
            "status": 413,
            "code": "payload_too_large",
            "detail": f"Request body exceeds {limit} bytes.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
