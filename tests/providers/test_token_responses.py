"""Token-response handling against a scripted token endpoint (httpx.MockTransport).

Covers the compliance hooks (form-encoded bodies, nested tokens, string ``expires_in``,
HTTP-200 errors) and every R12 rejection, plus transport failures, without a network.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.providers import AppCredentials, OAuthProviderError, Provider, exchange_code, refresh
from app.providers.startup import build_registry
from app.vault.secret import Secret

pytestmark = pytest.mark.db_independent  # never uses the database under test

TOKEN_URL = "https://auth.acme.example/token"


def provider(**overrides: Any) -> Provider:
    entry: dict[str, Any] = {
        "display_name": "Acme",
        "fivetran_service": "hubspot",
        "issuer": "https://auth.acme.example",
        "authorization_url": "https://auth.acme.example/authorize",
        "token_url": TOKEN_URL,
        "scopes": ["read", "write", "extra"],
        "required_scopes": ["read"],
        "token_auth_method": "client_secret_post",
        "refresh_token_knob": "the 'offline' switch of the Acme app",
        "replaces": "hubspot",
    }
    entry.update(overrides)
    settings = Settings(
        mode="production",
        oauth={
            "providers": {"acme": entry},
            "apps": {"acme": {"client_id": "c", "client_secret": "s"}},
        },
    )
    return build_registry(settings).get("acme")


CREDS = AppCredentials("c", Secret("s"), {})


def scripted(
    *responses: httpx.Response | Exception,
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handler), seen


def ok(**body: Any) -> httpx.Response:
    base = {"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt"}
    base.update(body)
    return httpx.Response(200, json={k: v for k, v in base.items() if v is not None})


async def run(p: Provider, transport: httpx.AsyncBaseTransport, **kw: Any) -> Any:
    return await exchange_code(
        p,
        code="the-code",
        code_verifier="v" * 64,
        redirect_uri="https://connect.example.com/oauth/callback/acme",
        token_endpoint=TOKEN_URL,
        credentials=CREDS,
        issuer="https://auth.acme.example",
        transport=transport,
        **kw,
    )


async def test_valid_response_and_request_shape() -> None:
    transport, seen = scripted(ok(scope="read write extra"))
    result = await run(provider(), transport)
    assert result.access_token.reveal() == "at"
    assert result.refresh_token.reveal() == "rt"
    assert result.granted_scope == "read write extra" and result.missing_scopes == ()
    body = dict(httpx.QueryParams(seen[0].content.decode()))
    assert body == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": "https://connect.example.com/oauth/callback/acme",
        "code_verifier": "v" * 64,
        "client_id": "c",
        "client_secret": "s",
    }
    assert seen[0].headers["accept"] == "application/json"


async def test_narrower_grant_is_flagged_and_missing_required_scope_fails() -> None:
    transport, _ = scripted(ok(scope="read"))
    result = await run(provider(), transport)
    assert result.granted_scope == "read"
    assert result.missing_scopes == ("write", "extra")
    transport, _ = scripted(ok(scope="write extra"))
    with pytest.raises(OAuthProviderError) as info:
        await run(provider(), transport)
    assert info.value.error_code == "insufficient_scope"


async def test_form_encoded_response_is_accepted() -> None:
    form = "access_token=at&token_type=bearer&refresh_token=rt&expires_in=60&scope=read"
    transport, _ = scripted(
        httpx.Response(
            200, text=form, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    )
    result = await run(provider(), transport)
    assert result.access_token.reveal() == "at"
    assert result.expires_at is not None


async def test_nested_token_and_defaults() -> None:
    p = provider(token_response_key="data", token_type_default="bearer")
    transport, _ = scripted(
        httpx.Response(
            200, json={"data": {"access_token": "at", "refresh_token": "rt", "expires_in": "120"}}
        )
    )
    result = await run(p, transport)
    assert result.access_token.reveal() == "at"
    assert result.expires_at is not None


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (ok(refresh_token=None), "missing_refresh_token"),
        (ok(token_type="mac"), "invalid_token_response"),
        (ok(token_type=None), "invalid_token_response"),
        (ok(access_token=None), "invalid_token_response"),
        (ok(access_token=""), "invalid_token_response"),
        (ok(expires_in=-1), "invalid_token_response"),
        (ok(expires_in="soon"), "invalid_token_response"),
        (ok(expires_in=True), "invalid_token_response"),
        (ok(refresh_token=""), "invalid_token_response"),
        (
            httpx.Response(
                201, json={"access_token": "at", "token_type": "bearer", "refresh_token": "r"}
            ),
            "invalid_token_response",
        ),
        (httpx.Response(200, json=["access_token"]), "invalid_token_response"),
        (httpx.Response(200, text="<html>ok</html>"), "invalid_token_response"),
        (httpx.Response(502, text="<html>bad gateway</html>"), "server_error"),
        (
            httpx.Response(
                200, json={"error": "invalid_grant", "error_description": "secret-detail"}
            ),
            "invalid_grant",
        ),
        (
            httpx.Response(400, json={"error": "weird_vendor_code", "error_description": "x"}),
            "provider_error",
        ),
        (httpx.Response(401, json={"error": "invalid_client"}), "invalid_client"),
        (
            httpx.Response(302, headers={"location": "https://other.example/"}),
            "token_endpoint_redirect",
        ),
        (httpx.ConnectError("boom"), "token_endpoint_unavailable"),
        (httpx.ReadTimeout("slow"), "token_endpoint_unavailable"),
    ],
)
async def test_rejected_token_responses(response: Any, code: str) -> None:
    transport, seen = scripted(response)
    with pytest.raises(OAuthProviderError) as info:
        await run(provider(), transport)
    assert info.value.error_code == code
    assert len(seen) == 1  # no retry, no redirect following
    assert "secret-detail" not in str(info.value)
    if code == "missing_refresh_token":
        assert "the 'offline' switch of the Acme app" in str(info.value)


async def test_refresh_sends_no_scope_and_detects_non_rotation() -> None:
    transport, seen = scripted(ok(refresh_token=None))
    result = await refresh(
        provider(),
        refresh_token=Secret("old-rt"),
        token_endpoint=TOKEN_URL,
        credentials=CREDS,
        issuer="https://auth.acme.example",
        transport=transport,
    )
    assert result.rotated is False and result.refresh_token.reveal() == "old-rt"
    body = dict(httpx.QueryParams(seen[0].content.decode()))
    assert body["grant_type"] == "refresh_token" and "scope" not in body
    transport, _ = scripted(ok(refresh_token="new-rt"))
    rotated = await refresh(
        provider(),
        refresh_token=Secret("old-rt"),
        token_endpoint=TOKEN_URL,
        credentials=CREDS,
        issuer="https://auth.acme.example",
        transport=transport,
    )
    assert rotated.rotated is True and rotated.refresh_token.reveal() == "new-rt"


def test_json_body_method_shape() -> None:
    from app.providers.client import json_body_method

    encode = json_body_method(
        {"client_id": "app_id", "client_secret": "secret", "code": "auth_code"}
    )

    class C:
        client_id, client_secret = "app", "sec"

    headers: dict[str, str] = {}
    _, headers, body = encode(
        C(), "POST", TOKEN_URL, headers, b"grant_type=authorization_code&code=xyz&redirect_uri=r"
    )
    assert json.loads(body) == {"app_id": "app", "secret": "sec", "auth_code": "xyz"}
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in": [3600]},
        {"expires_in": {"seconds": 3600}},
        {"expires_at": [1]},
        {"expires_at": {"at": 1}},
    ],
)
async def test_non_numeric_expiry_is_an_invalid_token_response(body: dict[str, Any]) -> None:
    """A list or object as ``expires_in``/``expires_at`` must be an OAuthProviderError, not
    a TypeError escaping from authlib's token parsing."""
    transport, seen = scripted(ok(**body))
    with pytest.raises(OAuthProviderError) as info:
        await run(provider(), transport)
    assert info.value.error_code == "invalid_token_response"
    assert len(seen) == 1
    transport, _ = scripted(ok(**body))
    with pytest.raises(OAuthProviderError) as info:
        await refresh(
            provider(),
            refresh_token=Secret("rt"),
            token_endpoint=TOKEN_URL,
            credentials=CREDS,
            issuer="https://auth.acme.example",
            transport=transport,
        )
    assert info.value.error_code == "invalid_token_response"


@pytest.mark.parametrize("expires_in", [10**12, 10**20])
async def test_out_of_range_expires_in_is_an_invalid_token_response(expires_in: int) -> None:
    """An ``expires_in`` past the calendar once raised OverflowError while computing the
    expiry (a 500 in the callback after the state was consumed)."""
    transport, _ = scripted(ok(expires_in=expires_in))
    with pytest.raises(OAuthProviderError) as info:
        await run(provider(), transport)
    assert info.value.error_code == "invalid_token_response"
    transport, _ = scripted(ok(expires_in=expires_in))
    with pytest.raises(OAuthProviderError) as info:
        await refresh(
            provider(),
            refresh_token=Secret("rt"),
            token_endpoint=TOKEN_URL,
            credentials=CREDS,
            issuer="https://auth.acme.example",
            transport=transport,
        )
    assert info.value.error_code == "invalid_token_response"
    # A long but representable lifetime (10 years) stays accepted.
    transport, _ = scripted(ok(expires_in=10 * 365 * 86400))
    assert (await run(provider(), transport)).expires_at is not None
