"""The end-user's browser up to the provider's redirect, tolerant of failures."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tests.onboarding.conftest import APP_ORIGIN, EndUserBrowser


async def to_callback(browser: EndUserBrowser, connect_url: str) -> tuple[str | None, str]:
    """Start + consent: ``(callback URL, "")``, or ``(None, "<step>_<status>")``."""
    r = await browser.client.post(
        connect_url, headers={**browser._headers(), "Origin": APP_ORIGIN}, content=b""
    )
    if r.status_code != 303:
        return None, f"start_{r.status_code}"
    browser._remember(r)
    authorize = urlsplit(r.headers["location"])
    query = [(k, v) for k, v in parse_qsl(authorize.query) if k != "login_hint"]
    query.append(("login_hint", "auto"))
    r = await browser.client.get(urlunsplit(authorize._replace(query=urlencode(query))))
    if r.status_code not in (302, 303):
        return None, f"consent_{r.status_code}"
    return str(r.headers["location"]), ""
