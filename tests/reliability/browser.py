"""The end-user's browser up to the provider's redirect, tolerant of failures."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.fixtures.browser import Browser
from tests.fixtures.onboarding import APP_ORIGIN


async def to_callback(browser: Browser, connect_url: str) -> tuple[str | None, str]:
    """Start + consent: ``(callback URL, "")``, or ``(None, "<step>_<status>")``."""
    r = await browser.client.post(
        connect_url, headers={**browser._cookie_header(), "Origin": APP_ORIGIN}, content=b""
    )
    if r.status_code != 303:
        return None, f"start_{r.status_code}"
    browser._keep(r)
    authorize = urlsplit(r.headers["location"])
    query = [(k, v) for k, v in parse_qsl(authorize.query) if k != "login_hint"]
    query.append(("login_hint", "auto"))
    r = await browser.client.get(urlunsplit(authorize._replace(query=urlencode(query))))
    if r.status_code not in (302, 303):
        return None, f"consent_{r.status_code}"
    return str(r.headers["location"]), ""
