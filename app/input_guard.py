"""Text checks at the edge, before any route (or database) sees the request.

Every client-supplied string must be text both databases and every JSON encoder accept:
valid Unicode (no lone surrogates — JSON lets a client send ``"\\udfff"``), no NUL
(PostgreSQL refuses it in ``text``/``jsonb``), no other C0 control characters in paths and
query strings, bounded length, bounded JSON nesting. A request that breaks a rule is refused
with a problem (400 for the URL, 422 for the body, 414 for an over-long query) and never
reaches a service, so nothing is half-written. On the end-user's browser pages (the
``page_prefixes`` the app passes, ``/connect/*`` and ``/oauth/callback/*``) the same refusal is
the end-user error page instead (``page``: localised, branded, ``no-store``, CSP); API routes
keep the JSON problem.

:func:`check_text` and :func:`text_problem` are the reusable pieces (cursors use them too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from app.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Deepest JSON nesting accepted in a request body (Fivetran configs are a few levels deep).
MAX_JSON_DEPTH = 32
#: Longest string (key or value) accepted anywhere in a JSON body, in characters.
MAX_JSON_STRING = 65_536
#: Longest query string accepted, in bytes.
MAX_QUERY_BYTES = 8_192

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
#: What an answer cannot carry: a lone surrogate (not encodable as UTF-8) or NUL.
_UNENCODABLE_RE = re.compile("[\ud800-\udfff\x00]")
#: The top-level body field a JSON-path detail names (the problem's ``field``).
_TOP_FIELD_RE = re.compile(r"\$\.([A-Za-z0-9_]+)")
_CONTROL_RE = re.compile("[\x00-\x1f\x7f]")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Mounted counterparts (sandbox simulators) check their own input.
_UNGUARDED_PREFIXES = ("/sandbox/",)


def text_problem(value: str, *, max_length: int, controls: bool = False) -> str | None:
    """Why ``value`` is not acceptable text, or None. ``controls``: refuse every C0 control
    character (URLs), else only NUL (bodies may carry newlines, e.g. PEM keys)."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    if _SURROGATE_RE.search(value):
        return "is not valid Unicode (lone surrogate)"
    if controls:
        if _CONTROL_RE.search(value):
            return "contains a control character"
    elif "\x00" in value:
        return "contains a NUL character"
    return None


def scrub(value: Any) -> Any:
    """``value`` with every lone surrogate and NUL replaced by U+FFFD (recursively), for
    output: a stored value that predates the edge checks must not make a response (or a
    whole list) unserialisable. A clean value (the common case) is returned as it is."""
    return value if _encodable(value) else _scrubbed(value)


def _encodable(value: Any) -> bool:
    """No string anywhere in ``value`` (keys included) holds a lone surrogate or NUL; one
    iterative walk that builds nothing (a status read's answer passes here every time)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNENCODABLE_RE.search(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return True


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return _UNENCODABLE_RE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrubbed(k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value


def check_json(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """The first problem of a decoded JSON document (path + reason), or None. Iterative, so
    a deep document cannot exhaust the stack here."""
    stack: list[tuple[str, Any, int]] = [("$", value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                return f"{path} is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, sub in item.items():
                    reason = text_problem(str(key), max_length=MAX_JSON_STRING)
                    if reason:
                        return f"a key of {path} {reason}"
                    stack.append((f"{path}.{key}"[:200], sub, depth + 1))
            else:
                stack.extend((f"{path}[{i}]", sub, depth + 1) for i, sub in enumerate(item))
        elif isinstance(item, str):
            reason = text_problem(item, max_length=MAX_JSON_STRING)
            if reason:
                return f"{path} {reason}"
    return None


def check_url(scope: Scope) -> tuple[int, str] | None:
    """(status, detail) when the path or query string is not acceptable, else None."""
    path = str(scope.get("path", ""))
    reason = text_problem(path, max_length=4096, controls=True)
    if reason:
        return 400, f"The URL path {reason}"
    raw_query: bytes = scope.get("query_string", b"")
    if len(raw_query) > MAX_QUERY_BYTES:
        return 414, f"The query string is longer than {MAX_QUERY_BYTES} bytes"
    try:
        pairs = parse_qsl(raw_query.decode("ascii"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return 400, "The query string is not valid percent-encoded UTF-8"
    for key, value in pairs:
        reason = text_problem(key, max_length=MAX_QUERY_BYTES, controls=True) or text_problem(
            value, max_length=MAX_QUERY_BYTES, controls=True
        )
        if reason:
            return 400, f"Query parameter '{key[:50]}' {reason}"
    return None


async def send_problem(
    send: Send, status: int, code: str, title: str, detail: str, field: str | None = None
) -> None:
    problem: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field is not None:
        problem["field"] = field
    body = json.dumps(problem, ensure_ascii=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_json(scope: Scope) -> bool:
    for k, v in scope.get("headers", []):
        if k == b"content-type":
            media = v.decode("latin-1").split(";", 1)[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


#: Renders the refusal of a browser page: ``(scope, status) -> ASGI response``.
PageRenderer = Callable[[Scope, int], ASGIApp]


class InputGuardMiddleware:
    """Refuses unacceptable URLs and JSON bodies before routing (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        page_prefixes: tuple[str, ...] = (),
        page: PageRenderer | None = None,
    ) -> None:
        self.app = app
        self.page_prefixes = page_prefixes if page is not None else ()
        self.page = page

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        problem: tuple[str, str, str, str | None],
    ) -> None:
        if self.page is not None and str(scope.get("path", "")).startswith(self.page_prefixes):
            await self.page(scope, status)(scope, receive, send)
            return
        code, title, detail, field = problem
        await send_problem(send, status, code, title, detail, field)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(_UNGUARDED_PREFIXES):
            await self.app(scope, receive, send)
            return
        url_problem = check_url(scope)
        if url_problem is not None:
            status, detail = url_problem
            code, title = (
                ("uri_too_long", "URI too long") if status == 414 else ("invalid_url", "Bad URL")
            )
            await self._refuse(scope, receive, send, status, (code, title, detail, None))
            return
        if scope.get("method") not in _BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        reason = _body_problem(body)
        if reason is not None:
            top = _TOP_FIELD_RE.search(reason)
            field = top.group(1) if top else None
            await self._refuse(
                scope, receive, send, 422, ("invalid_input", "Invalid input", reason, field)
            )
            return
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": body, "more_body": False}], receive),
            send,
        )


def _body_problem(body: bytes) -> str | None:
    if not body.strip():
        return None
    try:
        value = json.loads(body)
    except RecursionError:
        return f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels"
    except ValueError:
        return None  # malformed JSON: the route's own validation answers it
    reason = check_json(value)
    return f"Invalid JSON body: {reason}" if reason else None


def _replay(messages: list[Message], then: Receive) -> Receive:
    """Hands out the already-read ``messages``, then the connection's own ``receive``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return await then()

    return receive
