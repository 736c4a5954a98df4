"""End-user pages over ASGI: branding settings and their validation, Accept-Language
negotiation and catalogs, Connect/Reconnect wording, relative expiry with a machine-readable
UTC time, and error pages that link back only to a known session's stored return_to (R22)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from babel import Locale
from pydantic import ValidationError

from app.config import Settings
from app.connect import i18n
from app.connect.pages import ERROR_PAGES, TEXTS
from tests.fixtures.browser import query_of, relative, with_params
from tests.fixtures.connect import APP_ORIGIN, RETURN_TO, FlowHarness

PROVIDER = "hubspot"
LOGO = "https://cdn.example-brand.com:8443/img/logo.png"
BRANDING = {
    "company_name": "Northwind Analytics",
    "logo_url": LOGO,
    "accent_color": "#D9480F",
    "support_url": "https://help.northwind.example/connect",
}


@pytest.fixture
def flow_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(api={"allowed_origins": [APP_ORIGIN]}, branding=BRANDING)


class _Page(HTMLParser):
    """Just enough of a DOM: the <html lang>, links, images, <time> and visible text."""

    def __init__(self, body: str) -> None:
        super().__init__()
        self.lang = ""
        self.links: list[dict[str, str]] = []
        self.images: list[dict[str, str]] = []
        self.times: list[dict[str, str]] = []
        self.text_parts: list[str] = []
        self._in_style = False
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.lang = a.get("lang", "")
        elif tag == "a":
            self.links.append(a)
        elif tag == "img":
            self.images.append(a)
        elif tag == "time":
            self.times.append(a)
        self._in_style = tag in ("style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.text_parts.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.text_parts)).strip()


async def _confirmation(
    harness: FlowHarness, language: str | None = None, **body: Any
) -> tuple[Any, _Page]:
    r, page, _created = await _confirmation_of(harness, language, **body)
    return r, page


async def _confirmation_of(
    harness: FlowHarness, language: str | None = None, **body: Any
) -> tuple[Any, _Page, dict[str, Any]]:
    created = await harness.session(PROVIDER, **body)
    headers = {"Accept-Language": language} if language else {}
    r = await harness.browser().get(relative(created["connect_url"]), headers=headers)
    assert r.status_code == 200, r.text
    return r, _Page(r.text), created


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("accent_color", "red"),
        ("accent_color", "#fff"),
        ("accent_color", "#12345g"),
        ("accent_color", "#1234567"),
        ("accent_color", "rgb(1,2,3)"),
        ("accent_color", "#123456;background:url(https://evil.com)"),
        ("logo_url", "http://cdn.example.com/logo.png"),  # http off loopback
        ("logo_url", "javascript:alert(1)"),
        ("logo_url", "data:image/png;base64,AAAA"),
        ("logo_url", "//cdn.example.com/logo.png"),
        ("logo_url", "https://user@cdn.example.com/logo.png"),
        ("logo_url", 'https://cdn.example.com/a"onerror="alert(1)'),
        ("logo_url", "https://cdn.example.com/a b.png"),
        ("logo_url", "https:cdn.example.com/logo.png"),
        ("support_url", "http://help.example.com"),
        ("support_url", "javascript:alert(1)"),
        ("support_url", "mailto:help@example.com"),
        ("company_name", ""),
        ("company_name", " Northwind"),
        ("company_name", "North\nwind"),
        ("company_name", "N" * 81),
    ],
)
def test_bad_branding_settings_are_refused(
    settings_factory: Callable[..., Settings], field: str, value: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        settings_factory(branding={field: value})
    assert field in str(exc.value).lower() or "branding" in str(exc.value).lower()


def test_branding_settings_accepted_and_normalised(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(branding=BRANDING)
    assert settings.branding.accent_color == "#d9480f"
    # http on loopback: sandbox only.
    loopback = {"logo_url": "http://127.0.0.1:9999/logo.png"}
    assert settings_factory(branding=loopback).branding.logo_url == loopback["logo_url"]
    with pytest.raises(ValidationError, match="LOGO_URL"):
        settings_factory(mode="production", branding=loopback)


@pytest.mark.db_independent
def test_branding_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBF_BRANDING__COMPANY_NAME", "Northwind")
    monkeypatch.setenv("PBF_BRANDING__ACCENT_COLOR", "#00AA00")
    settings = Settings()
    assert (settings.branding.company_name, settings.branding.accent_color) == (
        "Northwind",
        "#00aa00",
    )


# --- negotiation and catalogs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("ja-JP", "ja"),
        ("fr-CA, en;q=0.5", "fr"),
        ("es-419,es;q=0.9", "es"),
        ("en-GB,de;q=0.3", "en"),
        ("en;q=0.2, de;q=0.9", "de"),  # weights, not order
        ("de;q=0, fr", "fr"),  # q=0 means "not acceptable"
        ("pt-BR, *", "en"),  # unsupported: English
        ("", "en"),
        (None, "en"),
        ("de;q=abc, ja;q=2", "en"),  # malformed weights are ignored
        ("<script>, ja", "ja"),
        ("x" * 600 + ",de", "en"),  # overlong headers are not parsed past the cap
    ],
)
@pytest.mark.db_independent
def test_accept_language_negotiation(header: str | None, expected: str) -> None:
    assert str(i18n.negotiate(header)) == expected


@pytest.mark.db_independent
def test_parse_accept_language_orders_by_weight_then_position() -> None:
    assert i18n.parse_accept_language("fr;q=0.5, de, ja;q=0.5, es;q=0.9") == [
        "de",
        "es",
        "fr",
        "ja",
    ]


MESSAGE_IDS = sorted({m for pair in ERROR_PAGES.values() for m in pair} | set(TEXTS.values()))


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("language", [lang for lang in i18n.SUPPORTED_LOCALES if lang != "en"])
@pytest.mark.db_independent
def test_every_message_is_translated_with_the_same_placeholders(language: str) -> None:
    locale = Locale.parse(language)
    for message in MESSAGE_IDS:
        translated = i18n.translate(locale, message)
        assert translated != message, (language, message)
        assert _fields(translated) == _fields(message), (language, message, translated)


@pytest.mark.db_independent
def test_relative_time_is_localised() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    later = now + timedelta(minutes=4)
    got = {lang: i18n.relative_time(later, Locale.parse(lang), now) for lang in ("en", "de", "ja")}
    assert got == {"en": "in 4 minutes", "de": "in 4 Minuten", "ja": "4 分後"}
    # Naive timestamps (as SQLite returns them) are UTC.
    assert i18n.relative_time(later.replace(tzinfo=None), Locale.parse("en"), now) == (
        "in 4 minutes"
    )


# --- confirmation page --------------------------------------------------------------------------


async def test_confirmation_page_is_branded(harness: FlowHarness) -> None:
    await harness.end_user()
    r, page, created = await _confirmation_of(harness)
    assert page.lang == "en"
    assert "You are about to connect HubSpot for Acme Corp to Northwind Analytics." in page.text
    assert page.images == [{"src": LOGO, "alt": "Northwind Analytics logo"}]
    csp = r.headers["content-security-policy"]
    assert csp.endswith("; img-src https://cdn.example-brand.com:8443")
    assert "default-src 'none'" in csp
    assert [a["href"] for a in page.links] == [BRANDING["support_url"]]
    assert "background:#d9480f" in r.text
    # Relative expiry, and the absolute UTC time machine-readably.
    # (Wording of the relative part is pinned in test_relative_time_is_localised.)
    assert re.search(r"expires in \d+ (minutes?|seconds?) \(at .+ UTC\)", page.text), page.text
    (time,) = page.times
    expires = datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
    assert time["datetime"] == expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_confirmation_page_without_branding(
    settings_factory: Callable[..., Settings], make_flow_harness: Any
) -> None:
    harness = await make_flow_harness(settings_factory(api={"allowed_origins": [APP_ORIGIN]}))
    await harness.end_user()
    r, page = await _confirmation(harness)
    assert "You are about to connect HubSpot for Acme Corp." in page.text
    assert page.images == [] and page.links == []
    assert "img-src" not in r.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("language", "lang", "heading", "intro"),
    [
        ("de-DE,de;q=0.9", "de", "HubSpot verbinden", "für Acme Corp mit Northwind Analytics"),
        ("ja-JP", "ja", "HubSpot に接続", "Acme Corp の HubSpot を Northwind Analytics に接続"),
        ("fr-FR", "fr", "Connecter HubSpot", "pour Acme Corp à Northwind Analytics"),
        ("es-ES", "es", "Conectar HubSpot", "para Acme Corp con Northwind Analytics"),
    ],
)
async def test_confirmation_page_speaks_the_browsers_language(
    harness: FlowHarness, language: str, lang: str, heading: str, intro: str
) -> None:
    await harness.end_user()
    r, page = await _confirmation(harness, language)
    assert page.lang == lang
    assert f"<h1>{heading}</h1>" in r.text
    assert intro in page.text
    assert "You are about" not in page.text


async def test_reauthorization_says_reconnect(harness: FlowHarness) -> None:
    await harness.end_user()
    browser, callback, _ = await harness.callback_url_for(PROVIDER)
    r = await browser.get(relative(callback))
    connection_id = query_of(r.headers["location"])["connection_id"]
    _, page = await _confirmation(harness, connection_id=connection_id)
    assert "Reconnect HubSpot" in page.text
    assert "You are about to reconnect HubSpot" in page.text
    _, german = await _confirmation(harness, "de", connection_id=connection_id)
    assert "HubSpot erneut verbinden" in german.text
    _, first = await _confirmation(harness)
    assert "Reconnect" not in first.text


# --- error pages --------------------------------------------------------------------------------


def _back_links(page: _Page) -> list[str]:
    return [a["href"] for a in page.links if a.get("class") == "button"]


async def test_used_link_links_back_to_the_stored_return_to(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    browser = harness.browser()
    await harness.start(browser, created["connect_url"])
    r = await browser.get(relative(created["connect_url"]), headers={"Accept-Language": "de"})
    assert r.status_code == 400
    page = _Page(r.text)
    assert page.lang == "de"
    assert "Dieser Link kann nicht verwendet werden" in page.text
    (back,) = _back_links(page)
    assert back == with_params(
        RETURN_TO, session_id=created["id"], status="error", error="link_invalid"
    )
    assert "Zurück zu Northwind Analytics" in page.text
    # Starting it again (a POST) gets the same way back.
    again = await browser.post(relative(created["connect_url"]))
    assert again.status_code == 400 and "location" not in again.headers
    assert _back_links(_Page(again.text)) == [back]


async def test_refused_origin_links_back_to_the_stored_return_to(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER)
    r = await harness.browser().post(
        relative(created["connect_url"]),
        origin="https://evil.example",
        headers={"Accept-Language": "ja"},
    )
    assert r.status_code == 403
    page = _Page(r.text)
    assert page.lang == "ja" and "リクエストが拒否されました" in page.text
    assert _back_links(page) == [
        with_params(RETURN_TO, session_id=created["id"], status="error", error="origin_not_allowed")
    ]


async def test_browser_mismatch_links_back_to_the_stored_return_to(harness: FlowHarness) -> None:
    await harness.end_user()
    _browser, callback, created = await harness.callback_url_for(PROVIDER)
    r = await harness.browser().get(relative(with_params(callback, return_to="https://evil.com")))
    assert r.status_code == 400
    page = _Page(r.text)
    assert _back_links(page) == [
        with_params(RETURN_TO, session_id=created["id"], status="error", error="browser_mismatch")
    ]
    assert "evil" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/connect/unknown-token?return_to=https://evil.com",
        "/oauth/callback/hubspot?state=" + "u" * 43 + "&return_to=https://evil.com&next=x",
        "/oauth/callback/hubspot?code=x&return_to=https://evil.com",
        "/oauth/callback/nope?state=abc&return_to=https://evil.com",
    ],
)
async def test_unknown_session_error_pages_have_no_link_back(
    harness: FlowHarness, path: str
) -> None:
    await harness.end_user()
    await harness.session(PROVIDER)  # a session exists, but nothing names it
    r = await harness.browser().get(path, headers={"Accept-Language": "fr"})
    assert r.status_code in (400, 404)
    page = _Page(r.text)
    assert _back_links(page) == []
    assert [a["href"] for a in page.links] == [BRANDING["support_url"]]
    assert "evil" not in r.text and "location" not in r.headers
    assert page.lang == "fr"


async def test_button_text_contrasts_with_the_accent(
    settings_factory: Callable[..., Settings], make_flow_harness: Any
) -> None:
    light = settings_factory(
        api={"allowed_origins": [APP_ORIGIN]}, branding={"accent_color": "#FFDD00"}
    )
    harness = await make_flow_harness(light)
    await harness.end_user()
    r, _page = await _confirmation(harness)
    assert "background:#ffdd00;color:#111111" in r.text
    dark = await make_flow_harness(settings_factory(api={"allowed_origins": [APP_ORIGIN]}))
    r, _page = await _confirmation(dark)
    assert "background:#0b5cff;color:#ffffff" in r.text
