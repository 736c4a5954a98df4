"""The shared outbound HTTP client and its transports.

One ``httpx.AsyncClient`` per process, created in the lifespan. In sandbox mode (and in
tests) requests addressed to our own ``public_base_url`` — the embedded Fivetran simulator,
the sandbox authorization server, our own webhook endpoint — are served in-process through
``httpx.ASGITransport``: no socket, no network, same code path as production.
"""

from __future__ import annotations

import functools
import ssl
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from app.observability import InstrumentedTransport, Metrics

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class LoopbackRoutingTransport(httpx.AsyncBaseTransport):
    """Sends requests under ``prefix`` to an in-process ASGI app, everything else on."""

    def __init__(
        self, prefix: str, local: httpx.AsyncBaseTransport, remote: httpx.AsyncBaseTransport
    ) -> None:
        self._prefix = prefix.rstrip("/")
        self._local = local
        self._remote = remote

    def _is_local(self, request: httpx.Request) -> bool:
        url = str(request.url)
        return url == self._prefix or url.startswith(self._prefix + "/")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._is_local(request):
            return await self._local.handle_async_request(request)
        return await self._remote.handle_async_request(request)

    async def aclose(self) -> None:
        await self._remote.aclose()


class SharedTransport(httpx.AsyncBaseTransport):
    """The process's one outbound transport (a connection pool), lent to short-lived clients.

    authlib's per-call OAuth clients, the identity and account-list calls open an
    ``httpx.AsyncClient`` on it and close it when done; closing a client closes its
    transport, which would drop every pooled connection under the requests other flows have
    in flight (they fail with ``ReadError`` mid-request). So :meth:`aclose` does nothing
    here, and the owner — the lifespan, a CLI command — calls :meth:`shutdown` at exit.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """A borrowing client is done: the pool stays open for the others."""

    async def shutdown(self) -> None:
        """Close the pool (the owner, once, at exit)."""
        await self._inner.aclose()


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The verifying TLS context of outbound calls, built once per process (loading the CA
    bundle costs ~70 ms; a context is safe to share, nothing changes it after creation)."""
    return httpx.create_ssl_context()


def build_transport(
    metrics: Metrics,
    *,
    base_transport: httpx.AsyncBaseTransport | None = None,
    loopback_prefix: str | None = None,
    loopback_app: object | None = None,
) -> SharedTransport:
    """Instrumented transport; with ``loopback_app`` our own base URL is served in-process.
    Whoever builds it owns it: call :meth:`SharedTransport.shutdown` at exit."""
    inner: httpx.AsyncBaseTransport = base_transport or httpx.AsyncHTTPTransport(
        retries=0, verify=default_ssl_context()
    )
    if loopback_prefix and loopback_app is not None:
        local = httpx.ASGITransport(app=loopback_app)  # type: ignore[arg-type]
        inner = LoopbackRoutingTransport(loopback_prefix, local, inner)
    return SharedTransport(InstrumentedTransport(inner, metrics))


def build_client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    # Never follow redirects on outbound calls (R14); explicit timeouts everywhere.
    return httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT, follow_redirects=False)


def retry_after_seconds(response: httpx.Response) -> float | None:
    """``Retry-After`` as seconds to wait (delta-seconds or an HTTP date); None if absent/bad."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
