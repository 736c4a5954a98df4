"""The shared outbound transport over real sockets: a short-lived client that borrows it
(authlib's per-call OAuth client, the identity and picker calls) must not close the pool
under the other requests in flight.

Found by ``make bench`` (B2) with the counterparties in their own process: every finished
code exchange closed the process's connection pool, so concurrent exchanges and Fivetran
calls died mid-request (``token_endpoint_unavailable``; the server saw ``ClientDisconnect``).
In-process sandbox calls go through ``ASGITransport``, whose close does nothing, which is why
no ASGI test saw it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.kit.transport import build_client, build_transport
from app.observability import Metrics

pytestmark = pytest.mark.db_independent


#: Connections the test server holds open right now.
OPEN: set[asyncio.StreamWriter] = set()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A keep-alive HTTP/1.1 server: ``/slow`` answers after 0.5 s, anything else at once."""
    OPEN.add(writer)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/slow":
                await asyncio.sleep(0.5)
            body = path
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        OPEN.discard(writer)
        writer.close()


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}"


async def test_a_borrowing_client_closing_leaves_requests_in_flight_alone(origin: str) -> None:
    shared = build_transport(Metrics())
    owner = build_client(shared)
    try:
        slow = asyncio.create_task(owner.get(f"{origin}/slow"))
        await asyncio.sleep(0.1)  # the slow request is on the wire

        async def borrow(n: int) -> int:
            async with httpx.AsyncClient(transport=shared) as client:  # closed on exit
                return (await client.get(f"{origin}/fast/{n}")).status_code

        assert await asyncio.gather(*(borrow(n) for n in range(5))) == [200] * 5
        response = await slow
        assert response.status_code == 200 and response.text == "/slow"
        # The pool still serves new requests after the borrowers are gone.
        assert (await owner.get(f"{origin}/after")).text == "/after"
    finally:
        await owner.aclose()
        await shared.shutdown()


async def test_only_the_owner_closes_the_pool(origin: str) -> None:
    shared = build_transport(Metrics())
    async with httpx.AsyncClient(transport=shared) as client:
        assert (await client.get(f"{origin}/one")).status_code == 200
    await asyncio.sleep(0.05)
    assert len(OPEN) == 1  # the borrower is gone, its kept-alive connection stays pooled
    await shared.shutdown()
    for _ in range(50):
        if not OPEN:
            break
        await asyncio.sleep(0.02)
    assert not OPEN  # the owner's shutdown closed it
