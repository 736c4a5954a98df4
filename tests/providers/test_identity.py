"""Unit tests of the account-identity extraction (``app.providers.identity``) per source kind,
the ``IdentitySpec`` schema, and the catalog's identity data (every provider declares one)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from app.config import Settings
from app.providers.catalog_data import identity_data, load_catalog_data
from app.providers.identity import (
    AccountIdentity,
    IdentityError,
    check_id_token_claims,
    decode_id_token,
    extract,
    lookup,
    resolve_identity,
)
from app.providers.registry import Provider
from app.providers.spec import IdentitySpec, ProviderSpec
from app.providers.startup import build_registry
from app.providers.tokens import TokenResult
from app.vault.secret import Secret

pytestmark = pytest.mark.db_independent  # never uses the database under test

REGISTRY = build_registry(Settings(mode="sandbox"))


def spec(**values: Any) -> IdentitySpec:
    return IdentitySpec.model_validate(values)


def token_result(**values: Any) -> TokenResult:
    base: dict[str, Any] = {
        "provider_key": "x",
        "access_token": Secret("at-secret"),
        "refresh_token": None,
        "expires_at": None,
        "granted_scope": None,
        "issuer": "https://issuer.example",
        "client_id": "client-1",
    }
    base.update(values)
    return TokenResult(**base)


def jws(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


# --- extraction per source kind ----------------------------------------------------------


def test_token_response_with_id_pattern_and_label() -> None:
    salesforce = REGISTRY.get("salesforce").spec.identity
    doc = {
        "id": "https://login.salesforce.com/id/00D5g000001AbCdEAF/0055g000003XyZwAAB",
        "instance_url": "https://acme.my.salesforce.com",
    }
    got = extract(salesforce, provider_key="salesforce", document=doc)
    assert got == AccountIdentity("00D5g000001AbCdEAF", "https://acme.my.salesforce.com")
    with pytest.raises(IdentityError):  # an id URL of another shape is no org id
        extract(salesforce, provider_key="salesforce", document={"id": "https://evil/id/x/y"})


def test_nested_paths_numbers_and_label_format() -> None:
    s = spec(source="endpoint", url="https://x.example/me", id="data.0.id", label_format="#{id}")
    got = extract(s, provider_key="x", document={"data": [{"id": 12345}]})
    assert got == AccountIdentity("12345", "#12345")
    assert lookup({"a": [{"b": 1}]}, "a.1.b") is None
    assert lookup({"a": "text"}, "a.b") is None


@pytest.mark.parametrize(
    "document", [{}, {"id": None}, {"id": ""}, {"id": True}, {"id": {"nested": 1}}, None]
)
def test_missing_or_unusable_id_fails_closed(document: dict[str, Any] | None) -> None:
    with pytest.raises(IdentityError) as exc:
        extract(spec(source="token_response", id="id"), provider_key="x", document=document)
    assert exc.value.code == "identity_unavailable"


def test_overlong_id_is_refused_and_label_is_capped() -> None:
    s = spec(source="token_response", id="id", label="label")
    with pytest.raises(IdentityError):
        extract(s, provider_key="x", document={"id": "x" * 256})
    got = extract(s, provider_key="x", document={"id": "1", "label": "y" * 400})
    assert got.label is not None and len(got.label) == 255


def test_identity_repr_hides_personal_data() -> None:
    assert "acme" not in repr(AccountIdentity("acme-id", "acme@example.com"))


async def test_id_token_claims() -> None:
    google = REGISTRY.get("google_ads")
    claims = {"aud": "client-1", "exp": time.time() + 60, "sub": "1089", "email": "a@b.example"}
    got = await resolve_identity(
        google, token_result(id_token=Secret(jws(claims))), callback_params={}, inputs={}
    )
    assert got == AccountIdentity("1089", "a@b.example")


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-client", "exp": 4_000_000_000, "sub": "1"},  # token for another app
        {"aud": ["x", "y"], "exp": 4_000_000_000, "sub": "1"},
        {"aud": "client-1", "exp": 1, "sub": "1"},  # expired
        {"aud": "client-1", "sub": "1"},  # no exp
    ],
)
async def test_id_token_for_another_client_or_expired_is_refused(claims: dict[str, Any]) -> None:
    google = REGISTRY.get("google_ads")
    with pytest.raises(IdentityError):
        await resolve_identity(
            google, token_result(id_token=Secret(jws(claims))), callback_params={}, inputs={}
        )


async def test_id_token_missing_or_malformed() -> None:
    google = REGISTRY.get("google_ads")
    with pytest.raises(IdentityError, match="no id_token"):
        await resolve_identity(google, token_result(), callback_params={}, inputs={})
    for bad in ("a.b", "a.!!!.c", f"a.{base64.urlsafe_b64encode(b'[1]').decode()}.c"):
        with pytest.raises(ValueError):
            decode_id_token(bad)
    with pytest.raises(IdentityError):
        await resolve_identity(
            google, token_result(id_token=Secret("x.y.z")), callback_params={}, inputs={}
        )


def test_id_token_claim_check_is_pure() -> None:
    check_id_token_claims({"aud": ["client-1"], "exp": 100}, client_id="client-1", now=99)
    with pytest.raises(ValueError):
        check_id_token_claims({"aud": ["client-1"], "exp": 100}, client_id="client-1", now=100)


async def test_callback_and_input_sources() -> None:
    quickbooks = REGISTRY.get("quickbooks")
    got = await resolve_identity(
        quickbooks, token_result(), callback_params={"realmId": "9130123"}, inputs={}
    )
    assert got == AccountIdentity("9130123", "QuickBooks company 9130123")
    zendesk = REGISTRY.get("zendesk")
    got = await resolve_identity(
        zendesk, token_result(), callback_params={}, inputs={"subdomain": "acme"}
    )
    assert got == AccountIdentity("acme", "acme.zendesk.com")


async def test_none_source_skips() -> None:
    adroll = REGISTRY.get("adroll")
    assert adroll.spec.identity.source == "none"
    assert await resolve_identity(adroll, token_result(), callback_params={}, inputs={}) is None


async def test_endpoint_source_sends_the_token_as_declared() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1.3/user/info/":
            return httpx.Response(200, json={"code": 0, "data": {"core_user_id": "77"}})
        return httpx.Response(200, json={"app": {"id_code": "abc123", "name": "Acme"}})

    transport = httpx.MockTransport(answer)
    data = load_catalog_data()
    tiktok = Provider(
        "tiktok_ads",
        ProviderSpec.model_validate(
            {
                **data["tiktok_ads"],
                "identity": {
                    **data["tiktok_ads"]["identity"],
                    "url": "https://business-api.example/v1.3/user/info/",
                },
            }
        ),
    )
    got = await resolve_identity(
        tiktok, token_result(), callback_params={}, inputs={}, transport=transport
    )
    assert got is not None and got.id == "77"
    assert seen[-1].headers["Access-Token"] == "at-secret"
    assert "authorization" not in seen[-1].headers
    intercom = Provider("intercom", ProviderSpec.model_validate(data["intercom"]))
    got = await resolve_identity(
        intercom, token_result(), callback_params={}, inputs={"region": "eu"}, transport=transport
    )
    assert got == AccountIdentity("abc123", "Acme")
    assert str(seen[-1].url) == "https://api.eu.intercom.io/me"  # regional host from the hook
    assert seen[-1].headers["Authorization"] == "Bearer at-secret"
    assert "at-secret" not in str(seen[-1].url)


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, {"error": "x"}), (401, {}), (302, {}), (200, ["not", "an", "object"]), (200, None)],
)
async def test_endpoint_failures_fail_closed(status: int, body: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if body is None:
            return httpx.Response(status, text="<html>nope</html>")
        return httpx.Response(status, json=body, headers={"Location": "https://elsewhere"})

    intercom = REGISTRY.get("intercom")
    with pytest.raises(IdentityError):
        await resolve_identity(
            intercom,
            token_result(),
            callback_params={},
            inputs={},
            transport=httpx.MockTransport(answer),
        )


async def test_endpoint_unreachable_fails_closed() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    with pytest.raises(IdentityError, match="ConnectError"):
        await resolve_identity(
            REGISTRY.get("intercom"),
            token_result(),
            callback_params={},
            inputs={},
            transport=httpx.MockTransport(answer),
        )


# --- the schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"source": "none"},  # no reason
        {"source": "token_response"},  # no id
        {"source": "endpoint", "id": "id"},  # no url
        {"source": "endpoint", "id": "id", "url": "https://x/{access_token}"},  # token in URL
        {"source": "endpoint", "id": "id", "url": "https://x/me", "auth": "query:token"},
        {"source": "token_response", "id": "id", "id_pattern": "no-group"},
        {"source": "token_response", "id": "id", "id_pattern": "(a)(b)"},
        {"source": "token_response", "id": "id", "id_pattern": "("},
        {"source": "somewhere", "id": "id"},
        {"source": "token_response", "id": "id", "extra": 1},
    ],
)
def test_invalid_identity_specs_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        IdentitySpec.model_validate(values)


def test_identity_scopes_are_requested_not_required() -> None:
    google = REGISTRY.get("google_ads")
    assert google.scopes[-2:] == ("openid", "email")
    assert "openid" not in google.required_scopes


# --- the catalog data --------------------------------------------------------------------------


def test_every_catalog_provider_declares_its_identity_explicitly() -> None:
    catalog = load_catalog_data()
    declared = identity_data()
    assert set(declared) == set(catalog), "identity.yaml must list exactly the catalog providers"
    for key in catalog:
        identity = REGISTRY.get(key).spec.identity
        if identity.source == "none":
            assert identity.reason and "declared" not in identity.reason
        else:
            assert identity.verification.sources, key


def test_identity_endpoints_are_served_by_the_sandbox_server() -> None:
    for provider in REGISTRY.all():
        identity = provider.spec.identity
        if identity.source == "endpoint":
            assert identity.url is not None
            assert identity.url.startswith(
                f"http://127.0.0.1:8000/sandbox/oauth/{provider.key}/api/"
            )
