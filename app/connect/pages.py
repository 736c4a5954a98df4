"""The only two HTML pages of the service: the start confirmation and a static error page.

Error pages are chosen from a fixed table by a reason code: nothing from the request's query
string is ever rendered or redirected to (R22). An error page links back to the company only
with the STORED, validated ``return_to`` of a session the service itself identified (by its
start token or its flow), never with anything taken from the request. Every browser-facing
answer carries ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store`` (R15) and may
not be framed — except the confirmation page, whose policy is ``same-origin`` so that its own
form POST carries an ``Origin`` (see :data:`CONFIRMATION_REFERRER_POLICY`).

Pages speak the browser's language (``Accept-Language``, see :mod:`.i18n`) and wear the
company's branding (``branding.*`` settings): name, logo (the CSP allows exactly its
origin), accent colour and support link.
"""

from __future__ import annotations

import html
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from babel import Locale
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from app.config import BrandingSettings
from app.connect.i18n import absolute_utc, negotiate, relative_time, translate
from app.connect.origins import UnsafeUrl, parse_origin

Scope = MutableMapping[str, Any]

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
    "frame-ancestors 'none'; base-uri 'none'"
)

BROWSER_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": _CSP,
}

_TEMPLATES = Path(__file__).resolve().parent / "templates"

#: reason → (title, message), English message ids. Reasons are ours; never echo request data.
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
    "invalid_request": (
        "This address cannot be used",
        "The address of this page is damaged or too long. Go back to the application and "
        "start the connection again.",
    ),
    "too_many_requests": (
        "Too many requests",
        "Too many attempts in a short time. Wait a minute, then go back to the application "
        "and try again.",
    ),
}

#: Every other message id of the pages (the catalogs translate each of them).
TEXTS: dict[str, str] = {
    "connect": "Connect {source}",
    "reconnect": "Reconnect {source}",
    "intro": "You are about to connect {source} for {end_user}.",
    "intro_company": "You are about to connect {source} for {end_user} to {company}.",
    "intro_reconnect": "You are about to reconnect {source} for {end_user}.",
    "intro_reconnect_company": "You are about to reconnect {source} for {end_user} to {company}.",
    "explain": "You will be sent to {source} to sign in and approve access. Continue only if "
    "you asked for this connection.",
    "button": "Continue to {source}",
    "expiry": "This link works once and expires {relative} (at {absolute} UTC).",
    "logo": "{company} logo",
    "support": "Need help? Contact support",
    "back": "Back to {company}",
    "back_generic": "Back to the application",
    "reference": "Reference: {reason}",
}


@dataclass(frozen=True)
class PageContext:
    """Who is looking (their negotiated locale) and whose pages these are (branding)."""

    locale: Locale
    branding: BrandingSettings

    @property
    def lang(self) -> str:
        """The ``<html lang>`` value (BCP 47)."""
        return str(self.locale).replace("_", "-")

    def text(self, key: str, **values: str) -> str:
        """HTML of message ``key`` of :data:`TEXTS` in this locale, ``values`` escaped."""
        return self.translate(TEXTS[key], **values)

    def translate(self, message: str, **values: str) -> str:
        """HTML of ``message`` (an English message id) in this locale, ``values`` escaped."""
        return self.markup(message, **{k: html.escape(v, quote=True) for k, v in values.items()})

    def markup(self, message: str, **fragments: str) -> str:
        """HTML of ``message`` with ``fragments`` inserted as they are (trusted HTML)."""
        text = html.escape(translate(self.locale, message), quote=True)
        return text.format(**fragments) if fragments else text


def page_context(request: Request) -> PageContext:
    """The context of a browser request: ``Accept-Language`` and the configured branding."""
    return PageContext(
        locale=negotiate(request.headers.get("accept-language")),
        branding=request.app.state.settings.branding,
    )


@cache
def _template(name: str) -> Template:
    return Template((_TEMPLATES / name).read_text(encoding="utf-8"))


def _accent_text(accent: str) -> str:
    """Black or white text on the accent colour, whichever contrasts more (WCAG luminance)."""

    def channel(hex_pair: str) -> float:
        c = int(hex_pair, 16) / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(accent[i : i + 2]) for i in (1, 3, 5))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "#ffffff" if (1.05 / (luminance + 0.05)) >= ((luminance + 0.05) / 0.05) else "#111111"


def _headers(branding: BrandingSettings, referrer_policy: str) -> dict[str, str]:
    headers = {**BROWSER_HEADERS, "Referrer-Policy": referrer_policy}
    if branding.logo_url:
        try:
            logo_origin = parse_origin(branding.logo_url)[0].serialize()
        except UnsafeUrl:  # settings validation makes this unreachable; stay closed anyway
            return headers
        headers["Content-Security-Policy"] = f"{_CSP}; img-src {logo_origin}"
    return headers


def _render(
    ctx: PageContext,
    *,
    title: str,
    content: str,
    status_code: int,
    referrer_policy: str = "no-referrer",
) -> HTMLResponse:
    brand = ctx.branding
    logo = name = ""
    if brand.logo_url:
        alt = ctx.text("logo", company=brand.company_name) if brand.company_name else ""
        logo = f'<img src="{html.escape(brand.logo_url, quote=True)}" alt="{alt}">'
    if brand.company_name:
        name = f"<span>{html.escape(brand.company_name)}</span>"
    header = f'<header class="brand">{logo}{name}</header>\n' if (logo or name) else ""
    support = ""
    if brand.support_url:
        support = (
            f'<footer><a href="{html.escape(brand.support_url, quote=True)}" rel="noreferrer">'
            f"{ctx.text('support')}</a></footer>\n"
        )
    body = _template("layout.html").substitute(
        lang=ctx.lang,
        referrer=referrer_policy,
        title=title,
        accent=brand.accent_color,
        accent_text=_accent_text(brand.accent_color),
        brand=header,
        content=content,
        support=support,
    )
    return HTMLResponse(body, status_code=status_code, headers=_headers(brand, referrer_policy))


def error_page(
    reason: str, status_code: int = 400, *, ctx: PageContext, back: str | None = None
) -> HTMLResponse:
    """The static page of ``reason``; ``back`` — only ever a session's stored, validated
    ``return_to`` (with its status parameters) — becomes a link back to the company."""
    title_id, message_id = ERROR_PAGES.get(reason, ERROR_PAGES["invalid_state"])
    title = ctx.translate(title_id)
    back_link = ""
    if back is not None:
        company = ctx.branding.company_name
        label = ctx.text("back", company=company) if company else ctx.text("back_generic")
        back_link = f'<p><a class="button" href="{html.escape(back, quote=True)}">{label}</a></p>\n'
    content = _template("error.html").substitute(
        title=title,
        message=ctx.translate(message_id),
        back=back_link,
        reference=ctx.text("reference", reason=reason),
    )
    return _render(ctx, title=title, content=content, status_code=status_code)


def refusal_page_renderer(branding: BrandingSettings) -> Callable[[Scope, int], HTMLResponse]:
    """The edge guard's answer on a browser page (:class:`app.input_guard.InputGuardMiddleware`):
    the ``invalid_request`` error page in the browser's language, with the refusal's status.
    Nothing of the refused request is rendered; no session is identified, so no link back."""

    def render(scope: Scope, status: int) -> HTMLResponse:
        accept_language = None
        for k, v in scope.get("headers", []):
            if k == b"accept-language":
                accept_language = v.decode("latin-1")
        ctx = PageContext(locale=negotiate(accept_language), branding=branding)
        return error_page("invalid_request", status, ctx=ctx)

    return render


#: The confirmation page's own policy: ``same-origin`` makes the browser send a real
#: ``Origin`` with the page's same-origin form POST (under ``no-referrer`` Chromium sends
#: ``Origin: null``) and still nothing — no referrer, no origin in ``Referer`` — cross-origin.
CONFIRMATION_REFERRER_POLICY = "same-origin"


def confirmation_page(
    *,
    ctx: PageContext,
    action: str,
    source: str,
    end_user: str,
    expires_at: datetime,
    reauthorization: bool = False,
    now: datetime | None = None,
) -> HTMLResponse:
    """The page behind a ``connect_url``: who, which source, for which company, until when."""
    intro_key = "intro_reconnect" if reauthorization else "intro"
    strong = {
        "source": f"<strong>{html.escape(source)}</strong>",
        "end_user": f"<strong>{html.escape(end_user)}</strong>",
    }
    if ctx.branding.company_name:
        intro_key += "_company"
        strong["company"] = f"<strong>{html.escape(ctx.branding.company_name)}</strong>"
    expires = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    stamp = expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    absolute = html.escape(absolute_utc(expires, ctx.locale))
    expiry = ctx.markup(
        TEXTS["expiry"],
        relative=html.escape(relative_time(expires, ctx.locale, now)),
        absolute=f'<time datetime="{stamp}">{absolute}</time>',
    )
    heading = ctx.text("reconnect" if reauthorization else "connect", source=source)
    content = _template("confirm.html").substitute(
        heading=heading,
        intro=ctx.markup(TEXTS[intro_key], **strong),
        explain=ctx.text("explain", source=source),
        action=html.escape(action, quote=True),
        button=ctx.text("button", source=source),
        expiry=expiry,
    )
    return _render(
        ctx,
        title=heading,
        content=content,
        status_code=200,
        referrer_policy=CONFIRMATION_REFERRER_POLICY,
    )


def see_other(location: str) -> Response:
    return Response(status_code=303, headers={**BROWSER_HEADERS, "Location": location})
