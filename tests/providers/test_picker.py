"""The picker list client (:mod:`app.providers.picker`) and the picker catalog data.

The tricky pure parts: response paths with ``[]`` walks, value patterns, pagination (token
and next-URL, same origin only), error envelopes that mean "token refused". The list calls go
to an ``httpx.MockTransport`` playing the provider; the catalog checks read the shipped data.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.fivetran.index import get_service
from app.providers.picker import PickerError, fetch_options, options_from, walk
from app.providers.registry import AppCredentials, Provider
from app.providers.spec import PickerRequest, PickerSpec, ProviderSpec
from app.providers.startup import build_registry
from app.providers.validation import check_spec
from app.vault.secret import Secret

pytestmark = pytest.mark.db_independent  # never uses the database under test

CREDS = AppCredentials("app-id", Secret("app-secret"), {"developer_token": Secret("dev-tok")})


def _provider(picker: dict[str, Any]) -> Provider:
    spec = ProviderSpec(
        display_name="Example",
        fivetran_service="facebook_ads",
        issuer="https://example.com",
        authorization_url="https://example.com/authorize",
        token_url="https://example.com/token",
        picker=PickerSpec.model_validate(picker),
    )
    return Provider("example", spec)


async def _fetch(provider: Provider, handler: Any) -> dict[str, Any]:
    assert provider.spec.picker is not None
    return await fetch_options(
        provider,
        provider.spec.picker,
        access_token=Secret("tok-1"),
        credentials=CREDS,
        transport=httpx.MockTransport(handler),
    )


def test_walk_and_value_patterns() -> None:
    body = {"a": [{"b": [{"id": "customers/1"}, {"id": "customers/2"}]}, {"b": []}, {}]}
    assert walk(body, "a[].b[]") == [{"id": "customers/1"}, {"id": "customers/2"}]
    assert walk({}, "a[].b[]") == []  # an empty list is omitted by proto3 JSON
    assert walk(["x"], "") == [["x"]]
    with pytest.raises(ValueError):
        walk({"a": 7}, "a[]")
    with pytest.raises(ValueError):
        walk({"a": [7]}, "a[].b")
    request = PickerRequest(
        url="https://x.example/l", items="a[].b[]", value="id", value_pattern="^customers/([0-9]+)$"
    )
    assert [o.value for o in options_from(request, body)] == ["1", "2"]
    assert [o.label for o in options_from(request, body)] == ["1", "2"]  # label falls back
    odd = {"a": [{"b": [{"id": "managers/3"}, {"id": True}, {"id": {"x": 1}}]}]}
    assert options_from(request, odd) == []


async def test_token_pagination_dedupes_and_carries_the_credentials() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        page = request.url.params.get("pageToken")
        if page is None:
            return httpx.Response(200, json={"items": [{"id": 1, "n": "One"}], "next": "p2"})
        assert page == "p2"
        return httpx.Response(200, json={"items": [{"id": 1, "n": "One"}, {"id": 2, "n": "Two"}]})

    provider = _provider(
        {
            "fields": [
                {
                    "name": "accounts",
                    "title": "Accounts",
                    "request": {
                        "url": "https://api.example/list",
                        "query": {"size": "1"},
                        "token_header": "Access-Token",
                        "token_scheme": None,
                        "credential_query": {"app_id": "client_id", "secret": "client_secret"},
                        "app_headers": {"developer-token": "developer_token", "x-none": "nope"},
                        "items": "items[]",
                        "value": "id",
                        "label": "n",
                        "next_token": "next",
                        "next_token_param": "pageToken",
                    },
                }
            ]
        }
    )
    out = await _fetch(provider, handler)
    assert [(o.value, o.label) for o in out["accounts"]] == [("1", "One"), ("2", "Two")]
    assert len(seen) == 2
    first = seen[0]
    assert first.headers["access-token"] == "tok-1" and "authorization" not in first.headers
    assert first.headers["developer-token"] == "dev-tok" and "x-none" not in first.headers
    assert first.url.params["app_id"] == "app-id" and first.url.params["secret"] == "app-secret"
    assert seen[1].url.params["size"] == "1"


async def test_next_url_must_stay_on_the_same_origin() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "evil.example":
            raise AssertionError("followed a next link to another origin")
        return httpx.Response(
            200,
            json={"data": [{"account_id": "1"}], "paging": {"next": "https://evil.example/steal"}},
        )

    provider = _provider(
        {
            "fields": [
                {
                    "name": "accounts",
                    "title": "Accounts",
                    "request": {
                        "url": "https://graph.example/me/adaccounts",
                        "items": "data[]",
                        "value": "account_id",
                        "next_url": "paging.next",
                    },
                }
            ]
        }
    )
    with pytest.raises(PickerError) as caught:
        await _fetch(provider, handler)
    assert caught.value.kind == "failed"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": {}}, "unauthorized"),
        (403, None, "unauthorized"),
        (400, {"error": {"code": 190}}, "unauthorized"),
        (200, {"code": 40105, "data": {}}, "unauthorized"),
        (200, {"code": 50000, "data": {}}, "failed"),
        (500, {"error": {}}, "failed"),
        (200, "<html>", "failed"),
        (302, None, "failed"),
        (200, {"data": "nope"}, "failed"),
    ],
)
async def test_failures_are_classified(status: int, body: Any, kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if body == "<html>":
            return httpx.Response(status, text="<html>")
        headers = {"Location": "https://else.example/"} if status == 302 else None
        content = json.dumps(body).encode() if body is not None else b""
        return httpx.Response(status, content=content, headers=headers)

    provider = _provider(
        {
            "fields": [
                {
                    "name": "accounts",
                    "title": "Accounts",
                    "request": {
                        "url": "https://api.example/list",
                        "items": "data[]",
                        "value": "id",
                        # The specs are frozen: the cases that need another path say so here.
                        "status_path": None
                        if status == 200 and body == {"data": "nope"}
                        else "code",
                        "status_ok": [0],
                        "auth_error_path": "error.code"
                        if body == {"error": {"code": 190}}
                        else "code",
                        "auth_error_values": [40105, 190],
                    },
                }
            ]
        }
    )
    with pytest.raises(PickerError) as caught:
        await _fetch(provider, handler)
    assert caught.value.kind == kind
    assert "tok-1" not in caught.value.detail


async def test_transport_failure_is_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    provider = _provider(
        {
            "fields": [
                {
                    "name": "accounts",
                    "title": "Accounts",
                    "request": {"url": "https://api.example/l", "items": "d[]", "value": "id"},
                }
            ]
        }
    )
    with pytest.raises(PickerError) as caught:
        await _fetch(provider, handler)
    assert caught.value.kind == "failed"


def test_picker_fields_are_fivetran_config_fields_and_sandbox_urls_point_at_the_sandbox() -> None:
    real = build_registry(Settings(mode="sandbox"))
    with_picker = [p for p in real.all() if p.spec.picker is not None]
    assert len(with_picker) == 9
    for provider in with_picker:
        picker = provider.spec.picker
        assert picker is not None
        service = get_service(provider.fivetran_service)
        assert service is not None
        for item in picker.fields:
            assert item.name in service.config_fields, (provider.key, item.name)
            assert service.config_fields[item.name].type == "array", (provider.key, item.name)
            if provider.sandboxed:
                assert f"/sandbox/oauth/{provider.key}/api/" in item.request.url
        for name, value in picker.config.items():
            enum = service.config_fields[name].enum
            assert enum is not None and value in enum, (provider.key, name, value)


def test_catalog_check_refuses_a_bad_picker() -> None:
    spec = _provider(
        {
            "fields": [
                {
                    "name": "no_such_field",
                    "title": "X",
                    "request": {
                        "url": "http://api.example/l",
                        "items": "d[]",
                        "value": "id",
                        "value_pattern": "[0-9]+",
                        "next_token": "next",
                    },
                }
            ]
        }
    ).spec
    problems = "\n".join(
        check_spec("example", spec, allow_loopback_http=False, known_services=None)
    )
    assert "'no_such_field' is not a config field" in problems
    assert "must be an https:// URL" in problems
    assert "anchored" in problems
    assert "next_token and next_token_param go together" in problems
