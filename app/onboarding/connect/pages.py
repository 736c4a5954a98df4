"""The only two HTML pages of the service: the start confirmation and a static error page.

Error pages are chosen from a fixed table by a reason code: nothing from the request's query
string is ever rendered or redirected to (R22). Every browser-facing answer carries
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store`` (R15) and may not be framed —
except the confirmation page, whose policy is ``same-origin`` so that its own form POST carries
an ``Origin`` (see :data:`CONFIRMATION_REFERRER_POLICY`).
"""

from __future__ import annotations

import html
from datetime import datetime
from functools import cache
from pathlib import Path
from string import Template

from fastapi.responses import HTMLResponse, Response

BROWSER_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

_TEMPLATES = Path(__file__).resolve().parent / "templates"

#: reason → (title, message). Reasons are ours; never echo request data.
ERROR_PAGES: dict[str, tuple[str, str]] = {
    "link_invalid": (
        "This link cannot be used",
        "This connection link has expired or was already used. Go back to the application "
        "and start the connection again.",
    ),
    "origin_not_allowed": (
        "Request refused",
        "This connection can only be started from the application that created it.",
    ),
    "invalid_state": (
        "This sign-in cannot be completed",
        "The sign-in response is unknown, expired or was already used. Go back to the "
        "application and start the connection again.",
    ),
    "browser_mismatch": (
        "This sign-in cannot be completed",
        "The sign-in was not started in this browser. Go back to the application and start "
        "the connection again from this browser.",
    ),
    "provider_mismatch": (
        "This sign-in cannot be completed",
        "The sign-in response came from a different provider than the one it was started for.",
    ),
    "invalid_callback": (
        "This sign-in cannot be completed",
        "The sign-in response could not be verified.",
    ),
    "unknown_provider": (
        "Not found",
        "There is no such provider.",
    ),
    "too_many_requests": (
        "Too many requests",
        "Too many attempts in a short time. Wait a minute, then go back to the application "
        "and try again.",
    ),
}


@cache
def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


def error_page(reason: str, status_code: int = 400) -> HTMLResponse:
    title, message = ERROR_PAGES.get(reason, ERROR_PAGES["invalid_state"])
    body = _template("error.html").substitute(
        title=html.escape(title), message=html.escape(message), reason=html.escape(reason)
    )
    return HTMLResponse(body, status_code=status_code, headers=dict(BROWSER_HEADERS))


#: The confirmation page's own policy: ``same-origin`` makes the browser send a real
#: ``Origin`` with the page's same-origin form POST (under ``no-referrer`` Chromium sends
#: ``Origin: null``) and still nothing — no referrer, no origin in ``Referer`` — cross-origin.
CONFIRMATION_REFERRER_POLICY = "same-origin"


def confirmation_page(
    *, action: str, source: str, end_user: str, expires_at: datetime
) -> HTMLResponse:
    body = _template("confirm.html").substitute(
        action=html.escape(action, quote=True),
        source=html.escape(source),
        end_user=html.escape(end_user),
        expires_at=html.escape(expires_at.strftime("%Y-%m-%d %H:%M:%S")),
    )
    headers = {**BROWSER_HEADERS, "Referrer-Policy": CONFIRMATION_REFERRER_POLICY}
    return HTMLResponse(body, status_code=200, headers=headers)


def see_other(location: str) -> Response:
    return Response(status_code=303, headers={**BROWSER_HEADERS, "Location": location})
