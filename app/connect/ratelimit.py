"""Rate limits of the public browser endpoints: ``/connect/*``, ``/oauth/callback/*`` and
``/connect-card/return/*``.

These routes take no API key, so anyone can hammer them. Each request counts against its
client IP and against its session token (the connect start token in the path, or the OAuth
``state`` of a callback), in moving windows (the ``limits`` library; Redis storage when
``redis_url`` is set so replicas share counters, memory otherwise). Over a limit the browser
gets an HTML error page with status 429 and ``Retry-After`` — never JSON, never the route.

Counting must never take the flow down: when Redis is unreachable we let the request through
and log a warning (fail open; the routes themselves stay single-use and state-checked).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.config import Settings
from app.connect.i18n import negotiate
from app.connect.pages import PageContext, error_page

log = logging.getLogger("pbf.connect")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BROWSER_PREFIXES = ("/connect/", "/oauth/callback/", "/connect-card/return/")


def _session_token(scope: Scope) -> str | None:
    path = str(scope.get("path", ""))
    for prefix in ("/connect/", "/connect-card/return/"):
        if path.startswith(prefix):
            return path[len(prefix) :].split("/", 1)[0] or None
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if key in ("state", "oauth_token", "denied"):  # OAuth 2.0 / OAuth 1.0a (X)
            return value[:200] or None
    return None


class BrowserRateLimitMiddleware:
    """429 HTML page for browser requests over their per-IP or per-session limit."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.branding = settings.branding
        self.cfg = settings.rate_limit
        self.redis_url = settings.redis_url
        self.per_ip: RateLimitItem = parse(self.cfg.per_ip)
        self.per_session: RateLimitItem = parse(self.cfg.per_session)
        self._limiter: MovingWindowRateLimiter | None = None  # built on first use (no I/O now)

    def _get_limiter(self) -> MovingWindowRateLimiter:
        if self._limiter is None:
            storage: Storage
            if self.redis_url:
                uri = "async+" + self.redis_url if "://" in self.redis_url else self.redis_url
                storage = RedisStorage(
                    uri, key_prefix=self.cfg.redis_prefix, implementation="redispy"
                )
            else:
                storage = MemoryStorage()
            self._limiter = MovingWindowRateLimiter(storage)
        return self._limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.cfg.enabled
            or not str(scope.get("path", "")).startswith(BROWSER_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        retry_after = await self._retry_after(scope)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        accept_language = None
        for k, v in scope.get("headers", []):
            if k == b"accept-language":
                accept_language = v.decode("latin-1")
        ctx = PageContext(locale=negotiate(accept_language), branding=self.branding)
        response = error_page("too_many_requests", 429, ctx=ctx)
        response.headers["Retry-After"] = str(retry_after)
        await response(scope, receive, send)

    async def _retry_after(self, scope: Scope) -> int | None:
        """Seconds until the request would be allowed, or None when it is allowed now."""
        client = scope.get("client")
        checks = [(self.per_ip, "ip", client[0] if client else "unknown")]
        token = _session_token(scope)
        if token:
            checks.append((self.per_session, "session", token))
        limiter = self._get_limiter()
        try:
            for item, kind, ident in checks:
                if not await limiter.hit(item, kind, ident):
                    stats = await limiter.get_window_stats(item, kind, ident)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as exc:  # storage down: fail open, but say so
            log.warning("rate limit storage unavailable", extra={"error_type": type(exc).__name__})
        return None
