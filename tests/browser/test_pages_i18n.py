"""Localised, branded end-user pages in a real Chromium.

The browser's own ``Accept-Language`` (Playwright ``new_context(locale=…)``) picks the
language; the company's branding (name, logo served by a loopback "CDN", accent colour,
support link) comes from the server's settings. Nothing is injected: the pages are loaded,
read and clicked as an end-user would.
"""

from __future__ import annotations

import re
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fixtures.live_server import LiveServer, shot

pytestmark = pytest.mark.db_independent  # never uses the database under test

COMPANY = "Northwind Analytics"
LOGO_HITS: list[str] = []


def _png(width: int = 24, height: int = 24, rgb: tuple[int, int, int] = (217, 72, 15)) -> bytes:
    """A solid-colour PNG (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


class _Cdn(BaseHTTPRequestHandler):
    """The company's logo host (another loopback origin than the service)."""

    def do_GET(self) -> None:
        LOGO_HITS.append(self.path)
        body = _png() if self.path == "/brand/logo.png" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def live_env() -> Iterator[dict[str, str]]:
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), _Cdn)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    try:
        yield {
            "PBF_BRANDING__COMPANY_NAME": COMPANY,
            "PBF_BRANDING__LOGO_URL": f"http://127.0.0.1:{cdn.server_address[1]}/brand/logo.png",
            "PBF_BRANDING__ACCENT_COLOR": "#D9480F",
            "PBF_BRANDING__SUPPORT_URL": "https://help.northwind.example/connect",
        }
    finally:
        cdn.shutdown()


@pytest.fixture
def context_for(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """``context_for(locale, **options)`` → a page in a fresh context of that locale."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def make(locale: str, **options: Any) -> Any:
        context = chromium.new_context(locale=locale, **options)
        contexts.append(context)
        pg = context.new_page()
        pg.csp_violations = []
        pg.on(
            "console",
            lambda msg: (
                pg.csp_violations.append(msg.text)
                if "Content Security Policy" in msg.text
                else None
            ),
        )
        pages.append(pg)
        return pg

    yield make
    for i, pg in enumerate(pages):
        shot(pg, f"{request.node.name}-{i}-final")
    for context in contexts:
        context.close()


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _back(live: LiveServer) -> re.Pattern[str]:
    return re.compile(re.escape(live.return_to) + r"\?.*")


def _logo_loaded(pg: Any) -> bool:
    img = pg.locator("header img")
    img.wait_for()
    pg.wait_for_function("document.querySelector('header img').complete")
    return bool(pg.evaluate("document.querySelector('header img').naturalWidth > 0"))


def _assert_branded(pg: Any) -> None:
    assert pg.locator("header").get_by_text(COMPANY).is_visible()
    assert _logo_loaded(pg), "the logo did not load (CSP img-src?)"
    assert pg.csp_violations == []
    support = pg.locator("footer a")
    assert support.get_attribute("href") == "https://help.northwind.example/connect"


def _open_confirmation(
    live: LiveServer, context_for: Any, locale: str, end_user: str, heading: str
) -> tuple[Any, dict[str, Any], str]:
    """A new end-user's connect_url opened in a ``locale`` browser: (page, session, text)."""
    external_id = f"i18n-{locale}"
    live.end_user(external_id, name=end_user)
    created = live.connect_session(external_id, "salesforce")
    pg = context_for(locale)
    pg.goto(created["connect_url"])
    shot(pg, f"{locale}-confirmation")
    assert pg.evaluate("document.documentElement.lang") == locale.split("-")[0]
    assert pg.get_by_role("heading", name=heading).is_visible()
    return pg, created, pg.locator("main").inner_text()


def test_german_confirmation_consent_and_error_pages(live: LiveServer, context_for: Any) -> None:
    pg, created, text = _open_confirmation(
        live, context_for, "de-DE", "Erika Mustermann", "Salesforce verbinden"
    )
    assert f"für Erika Mustermann mit {COMPANY} zu verbinden" in text
    assert re.search(r"läuft in \d+ (Minuten|Minute|Sekunden) ab", text), text
    assert pg.locator("time").get_attribute("datetime")
    _assert_branded(pg)
    assert "/brand/logo.png" in LOGO_HITS
    pg.get_by_role("button", name="Weiter zu Salesforce").click()
    pg.get_by_role("button", name="Approve").click()
    pg.wait_for_url(_back(live))
    assert _query(pg.url)["status"] == "connected"
    # The used link again: a German error page with a way back to the company.
    pg.goto(created["connect_url"])
    shot(pg, "de-error")
    assert pg.evaluate("document.documentElement.lang") == "de"
    assert pg.get_by_role("heading", name="Dieser Link kann nicht verwendet werden").is_visible()
    _assert_branded(pg)
    pg.get_by_role("link", name=f"Zurück zu {COMPANY}").click()
    pg.wait_for_url(_back(live))
    back = _query(pg.url)
    assert back == {"session_id": created["id"], "status": "error", "error": "link_invalid"}


def test_japanese_confirmation_and_error_pages(live: LiveServer, context_for: Any) -> None:
    pg, _created, text = _open_confirmation(
        live, context_for, "ja-JP", "山田太郎", "Salesforce に接続"
    )
    assert f"山田太郎 の Salesforce を {COMPANY} に接続しようとしています。" in text
    assert re.search(r"\d+ (分|秒)後に期限切れになります", text), text
    _assert_branded(pg)
    # An unknown link: a Japanese error page, and no link back (no session is known).
    pg.goto(f"{live.base}/connect/not-a-real-token")
    assert pg.get_by_role("heading", name="このリンクは使用できません").is_visible()
    assert pg.get_by_role("link", name=re.compile("戻る")).count() == 0
    _assert_branded(pg)


def test_phone_viewport_fits(live: LiveServer, context_for: Any) -> None:
    live.end_user("i18n-phone", name="Jean-Baptiste Grenouille-Montmorency")
    created = live.connect_session("i18n-phone", "salesforce")
    pg = context_for(
        "fr-FR", viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True
    )
    pg.goto(created["connect_url"])
    shot(pg, "fr-phone-confirmation")
    assert pg.evaluate("document.documentElement.lang") == "fr"
    assert pg.evaluate("document.documentElement.scrollWidth") <= 360
    button = pg.get_by_role("button", name="Continuer vers Salesforce")
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert box["height"] >= 44
    _assert_branded(pg)
    button.tap()
    # The sandbox consent page: a phone layout with real touch targets too.
    approve = pg.get_by_role("button", name="Approve")
    approve.wait_for()
    shot(pg, "fr-phone-consent")
    assert pg.evaluate("document.documentElement.lang") == "en"
    assert pg.evaluate("document.documentElement.scrollWidth") <= 360
    for name in ("Approve", "Deny"):
        b = pg.get_by_role("button", name=name).bounding_box()
        assert b is not None and b["height"] >= 44 and b["width"] >= 44
        assert b["x"] >= 0 and b["x"] + b["width"] <= 360
    approve.tap()
    pg.wait_for_url(_back(live))
    assert _query(pg.url)["status"] == "connected"


def test_reauthorization_says_reconnect(live: LiveServer, context_for: Any) -> None:
    live.end_user("i18n-reauth")
    pg = context_for("en-US")
    first = live.connect_session("i18n-reauth", "salesforce")
    pg.goto(first["connect_url"])
    assert pg.get_by_role("heading", name="Connect Salesforce").is_visible()
    pg.get_by_role("button", name="Continue to Salesforce").click()
    pg.get_by_role("button", name="Approve").click()
    pg.wait_for_url(_back(live))
    connection_id = _query(pg.url)["connection_id"]
    again = live.connect_session("i18n-reauth", "salesforce", connection_id=connection_id)
    pg.goto(again["connect_url"])
    shot(pg, "reconnect-confirmation")
    assert pg.get_by_role("heading", name="Reconnect Salesforce").is_visible()
    assert "You are about to reconnect Salesforce" in pg.locator("main").inner_text()
    pg.get_by_role("button", name="Continue to Salesforce").click()
    pg.get_by_role("button", name="Approve").click()
    pg.wait_for_url(_back(live))
    back = _query(pg.url)
    assert back["status"] == "connected" and back["connection_id"] == connection_id
    # German reconnect wording too.
    de = context_for("de-DE")
    third = live.connect_session("i18n-reauth", "salesforce", connection_id=connection_id)
    de.goto(third["connect_url"])
    assert de.get_by_role("heading", name="Salesforce erneut verbinden").is_visible()


def test_malformed_links_show_the_error_page(live: LiveServer, context_for: Any) -> None:
    """The edge guard's refusals on browser URLs (a NUL in a connect link, an over-long
    callback) are the localised, branded error page — not JSON an end-user cannot read."""
    pg = context_for("de-DE")
    response = pg.goto(f"{live.base}/connect/abc%00def")
    shot(pg, "de-malformed-link")
    assert response is not None and response.status == 400
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert pg.evaluate("document.documentElement.lang") == "de"
    assert pg.get_by_role("heading", name="Diese Adresse kann nicht verwendet werden").is_visible()
    _assert_branded(pg)
    pg = context_for("fr-FR")
    response = pg.goto(f"{live.base}/oauth/callback/hubspot?code=c&state=" + "s" * 9000)
    shot(pg, "fr-overlong-callback")
    assert response is not None and response.status == 414
    assert pg.get_by_role("heading", name="Cette adresse ne peut pas être utilisée").is_visible()
    assert pg.get_by_role("link", name=re.compile("Retour")).count() == 0  # no session known
    _assert_branded(pg)
