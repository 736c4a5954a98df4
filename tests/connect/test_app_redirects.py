"""Native-app ``return_to`` (RFC 8252): allow-listed private-use URI schemes, attack tests in
the R22 style (each refused with 422 ``invalid_return_to`` and no row written), startup
validation of ``api.allowed_app_redirects``, and the end of a real flow redirecting to the
native URI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import ValidationError

from app.config import Settings
from tests.fixtures.browser import query_of, relative
from tests.fixtures.connect import APP_ORIGIN, FlowHarness

PROVIDER = "hubspot"
APP_URI = "com.example.app:/connected"
ALLOWED = [APP_URI, "com.example.app:/oauth/", "io.acme.mobile:/done"]


@pytest.fixture
def flow_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(api={"allowed_origins": [APP_ORIGIN], "allowed_app_redirects": ALLOWED})


# --- startup validation of the allow-list -----------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    [
        "javascript:/alert",
        "data:/text",
        "file:/etc/passwd",
        "http:/example.com",
        "https:/example.com",
        "vbscript:/x",
        "myapp:/connected",  # no dot: not reverse-domain
        "Com.Example.App:/connected",  # upper case
        "com.example.*:/connected",  # wildcard
        "com.example.app:/*",
        "*:/connected",
        "com.example.app://evil.com/connected",  # authority
        "com.example.app:connected",  # no slash
        "com.example.app:/a/../b",
        "com.example.app:/conn%65cted",
        "com.example.app:/connected?x=1",
        "com.example.app:/connected#frag",
        "com.example.app:/conn ected",
        "com.example..app:/x",
        ".com.example.app:/x",
        "com.example.app.:/x",
        "com.example.app:/" + "a" * 300,
        "",
    ],
)
def test_bad_allow_list_entries_refuse_to_start(
    settings_factory: Callable[..., Settings], entry: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        settings_factory(api={"allowed_app_redirects": [entry]})
    assert "allowed_app_redirects" in str(exc.value)


def test_good_allow_list_entries_are_accepted(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(api={"allowed_app_redirects": ALLOWED})
    assert settings.api.allowed_app_redirects == ALLOWED


def test_allow_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings_factory: Callable[..., Settings]
) -> None:
    monkeypatch.setenv("PBF_API__ALLOWED_APP_REDIRECTS", '["com.example.app:/connected"]')
    assert Settings().api.allowed_app_redirects == [APP_URI]
    monkeypatch.setenv("PBF_API__ALLOWED_APP_REDIRECTS", '["javascript:/x"]')
    with pytest.raises(ValidationError):
        Settings()


# --- session creation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "return_to",
    [
        "com.example.app.evil:/connected",  # look-alike scheme (suffix)
        "evil.com.example.app:/connected",  # look-alike scheme (prefix)
        "com.example.ap:/connected",
        "com.examp1e.app:/connected",
        "COM.EXAMPLE.APP:/connected",  # case games
        "Com.Example.App:/connected",
        "com.example.app://evil.com/connected",  # authority
        "com.example.app://evil.com",
        "com.example.app:///connected",
        "com.example.app:evil.com/connected",
        "com.example.app:/evil@connected",
        "com.example.app:%2F%2Fevil.com",  # percent-encoding
        "com.example.app:/%2e%2e/connected",
        "com.example.app:/connected%0a",
        "com%2Eexample.app:/connected",
        "com.example.app:/connected?next=https%3A%2F%2Fevil.com",
        " com.example.app:/connected",  # whitespace
        "com.example.app:/connected ",
        "com.example.app:/conn\tected",
        "com.example.app:/connected\n",
        "com.example.app :/connected",
        "com.example.app:/connected\x00",
        "com.example.app:\\/connected",
        "com.example.app:/connected#x",
        "com.example.app:/connected/../admin",
        "com.example.app:/connectedx",  # exact entry, not a prefix
        "com.example.app:/connected/more",
        "com.example.app:/oauth",  # prefix entry needs its slash
        "com.example.app:/other",
        "com.example.app:/connecte\u0301d",  # non-ASCII
        "io.acme.mobile:/connected",  # allowed scheme, path of another entry
        "javascript:alert(1)",
        "javascript:/connected",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:/connected",
        "file:/connected",
        "intent:/connected",
        "myapp:/connected",
        "com.other.app:/connected",
        "com.example.app:/" + "a" * 1100,
    ],
)
async def test_unsafe_native_return_to_is_refused(harness: FlowHarness, return_to: str) -> None:
    await harness.end_user()
    before = await harness.rows()
    r = await harness.create_session(PROVIDER, return_to=return_to)
    assert r.status_code == 422, (return_to, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    # NUL (and other text no database stores) is refused at the edge, before the route.
    edge = "\x00" in return_to
    assert body["code"] == ("invalid_input" if edge else "invalid_return_to"), body
    assert body["field"] == "return_to", body
    assert await harness.rows() == before


@pytest.mark.parametrize(
    "return_to",
    [
        APP_URI,
        "com.example.app:/connected?tab=sources&x=1",
        "com.example.app:/oauth/done",
        "com.example.app:/oauth/",
        "io.acme.mobile:/done",
        f"{APP_ORIGIN}/app-link/connected",  # a claimed https app link on an allowed origin
    ],
)
async def test_allow_listed_native_return_to_is_accepted(
    harness: FlowHarness, return_to: str
) -> None:
    await harness.end_user()
    r = await harness.create_session(PROVIDER, return_to=return_to)
    assert r.status_code == 201, r.text


async def test_native_return_to_is_refused_when_not_configured(
    settings_factory: Callable[..., Settings],
    make_flow_harness: Callable[[Settings], Awaitable[FlowHarness]],
) -> None:
    harness = await make_flow_harness(settings_factory(api={"allowed_origins": [APP_ORIGIN]}))
    await harness.end_user()
    before = await harness.rows()
    r = await harness.create_session(PROVIDER, return_to=APP_URI)
    assert r.status_code == 422 and r.json()["code"] == "invalid_return_to"
    assert await harness.rows() == before


# --- the end of the flow ----------------------------------------------------------------------


async def _finish(harness: FlowHarness, **body: Any) -> tuple[str, dict[str, Any]]:
    browser, callback, created = await harness.callback_url_for(PROVIDER, **body)
    r = await browser.get(relative(callback))
    assert r.status_code == 303, r.text
    assert r.headers["referrer-policy"] == "no-referrer"
    return r.headers["location"], created


async def test_flow_ends_at_the_native_uri(harness: FlowHarness) -> None:
    await harness.end_user()
    location, created = await _finish(harness, return_to=APP_URI)
    connection_id = query_of(location)["connection_id"]
    assert location == (
        f"{APP_URI}?session_id={created['id']}&status=connected&connection_id={connection_id}"
    )


async def test_flow_keeps_the_apps_own_query(harness: FlowHarness) -> None:
    await harness.end_user()
    location, created = await _finish(harness, return_to=f"{APP_URI}?tab=sources")
    assert location.startswith(f"{APP_URI}?tab=sources&session_id={created['id']}&status=")


async def test_denied_flow_returns_to_the_native_uri_with_an_error(harness: FlowHarness) -> None:
    await harness.end_user()
    created = await harness.session(PROVIDER, return_to=APP_URI)
    browser = harness.browser()
    denied = await harness.consent(
        await harness.start(browser, created["connect_url"]), login_hint="deny"
    )
    r = await browser.get(relative(denied))
    assert r.status_code == 303
    assert r.headers["location"] == (
        f"{APP_URI}?session_id={created['id']}&status=error&error=access_denied"
    )
