"""Who may see the demo page and obtain its API key: this machine only.

The key endpoint is the only place a browser can obtain an API key without pasting one, so
three independent checks stand in front of it:

1. the TCP peer is a loopback address (``request.client``; uvicorn runs with
   ``proxy_headers=False``, so ``X-Forwarded-For`` cannot fake it);
2. the ``Host`` is a loopback name — a DNS-rebinding page (``evil.example`` resolving to
   127.0.0.1) reaches the socket from a loopback peer, but under its own host name;
3. for the key itself, ``Origin`` is this very origin (and ``Sec-Fetch-Site``, when the
   browser sends it, is ``same-origin``): another site's page can make the victim's browser
   POST, never read the answer, and is refused before a key is made.

Every refusal is a 403 problem naming the rule, so a newcomer who binds 0.0.0.0 and browses
from another machine learns why.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request

from app.connect.origins import LOOPBACK_HOSTS
from app.errors import Forbidden


def _is_loopback_ip(value: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(value or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def require_loopback(request: Request) -> None:
    """Dependency: the request comes from this machine, addressed to a loopback host name."""
    if not _is_loopback_ip(request.client.host if request.client else None):
        raise Forbidden(
            "The sandbox demo is served to loopback clients only (open it on the machine "
            "that runs the server).",
            code="loopback_only",
        )
    if request.url.hostname not in LOOPBACK_HOSTS:
        raise Forbidden(
            "The sandbox demo answers only at a loopback host name (127.0.0.1, localhost or "
            "[::1]).",
            code="loopback_only",
        )


def require_same_origin(request: Request) -> None:
    """Dependency: a same-origin ``fetch`` from the demo page itself."""
    expected = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if origin != expected or (site is not None and site != "same-origin"):
        raise Forbidden(
            "The demo key is handed only to the demo page itself (same-origin request).",
            code="cross_origin_request",
        )
