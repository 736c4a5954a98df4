"""Provider quirks the sandbox authorization server emulates (a simulation).

Only what a connect flow depends on (the account identity each provider reports lives in
:mod:`app.sandbox.oauth.accounts`): TikTok's ``app_id``/``auth_code``/JSON body/``data``
envelope, QuickBooks' ``realmId`` and Shopify's signed ``shop``/``hmac``/``timestamp``
callback, Facebook's missing refresh token, Salesforce's ``instance_url`` (and no
``expires_in``), Pipedrive's ``api_domain``, and the non-standard token-response shapes of
Shopify, Intercom and Zendesk.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.providers.hooks import shopify_hmac_digest
from app.providers.spec import IdentitySpec
from app.sandbox.oauth import accounts
from app.sandbox.oauth.store import SandboxStore

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")


def authorize_params(provider_key: str, items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Map a provider's authorize query onto RFC 6749 names (TikTok ``app_id``)."""
    if provider_key == "tiktok_ads":
        items = [("client_id" if k == "app_id" else k, v) for k, v in items]
        if not any(k == "response_type" for k, _ in items):
            items.append(("response_type", "code"))
    return items


def token_params_from_json(
    provider_key: str, payload: dict[str, Any], store: SandboxStore
) -> list[tuple[str, str]]:
    """TikTok's JSON token body ``{app_id, secret, auth_code}`` → RFC 6749 form fields.

    TikTok binds no redirect URI at the token endpoint; the emulation supplies the one the
    code was issued for, so the rest of the grant runs unchanged.
    """
    code = str(payload.get("auth_code", ""))
    items = [
        ("grant_type", "authorization_code"),
        ("client_id", str(payload.get("app_id", ""))),
        ("client_secret", str(payload.get("secret", ""))),
        ("code", code),
    ]
    issued = store.codes.get(code)
    if issued is not None:
        items.append(("redirect_uri", issued.redirect_uri))
    return items


def callback_location(
    provider_key: str,
    location: str,
    *,
    request_params: dict[str, str],
    client_secret: str,
    username: str,
    identity: IdentitySpec | None = None,
) -> str:
    """Decorate a successful authorization redirect with the provider's extra parameters
    (account parameters such as QuickBooks' ``realmId`` come from :mod:`.accounts`)."""
    parts = urlsplit(location)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "code" for k, _ in query):
        return location
    if provider_key == "tiktok_ads":
        query = [("auth_code" if k == "code" else k, v) for k, v in query]
    elif provider_key == "shopify":
        shop = request_params.get("shop", "")
        query.append(("shop", shop))
        query.append(("timestamp", str(int(time.time()))))
        host = base64.urlsafe_b64encode(f"admin.shopify.com/store/{shop}".encode()).decode()
        query.append(("host", host.rstrip("=")))
        query.append(("hmac", shopify_hmac_digest(dict(query), client_secret)))
    for name, value in accounts.callback_params(provider_key, username, identity):
        if not any(k == name for k, _ in query):
            query.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(query)))


def decorate_token(
    provider_key: str,
    body: dict[str, Any],
    *,
    grant_type: str,
    account: str | None = None,
    identity: IdentitySpec | None = None,
) -> dict[str, Any]:
    """Reshape a standard token response the way the real provider answers; ``account``
    (the consenting sandbox account) adds what the provider says about it."""
    body = dict(body)
    has_rt = "refresh_token" in body
    if account is not None and (
        grant_type == "authorization_code" or provider_key in accounts.SALESFORCE_KEYS
    ):
        for name, value in accounts.token_fields(provider_key, account, identity).items():
            body.setdefault(name, value)
    if provider_key in ("salesforce", "salesforce_sandbox"):
        body.pop("expires_in", None)
        body["issued_at"] = str(int(time.time() * 1000))
    elif provider_key == "pipedrive":
        body["api_domain"] = "https://sandbox-company.pipedrive.com"
    elif provider_key == "tiktok_ads":
        data = {
            "access_token": body["access_token"],
            "advertiser_ids": ["7000000000001", "7000000000002"],
            "scope": [4, 5, 6],
        }
        return {"code": 0, "message": "OK", "request_id": secrets.token_hex(8), "data": data}
    elif provider_key == "shopify":
        return {"access_token": body["access_token"], "scope": body.get("scope", "")}
    elif provider_key == "intercom":
        body.pop("expires_in", None)
        body["token"] = body["access_token"]
    elif provider_key == "zendesk":
        body.pop("expires_in", None)  # no expires_in requested → non-expiring token
    elif provider_key == "linkedin_ads" and has_rt:
        body["refresh_token_expires_in"] = 31_536_000
    elif provider_key == "quickbooks" and has_rt:
        body["x_refresh_token_expires_in"] = 8_726_400
    elif provider_key == "pinterest_ads" and has_rt:
        body["refresh_token_expires_in"] = 31_536_000
        body["refresh_token_expires_at"] = int(time.time()) + 31_536_000
    return body


def misbehave(kind: str, body: dict[str, Any], separator: str) -> dict[str, Any]:
    """Apply one test-control misbehaviour to a successful token response body."""
    body = dict(body)
    if kind == "no_refresh_token":
        body.pop("refresh_token", None)
    elif kind == "narrow_scope":
        scopes = [s for s in re.split(r"[ ,]+", str(body.get("scope", ""))) if s]
        body["scope"] = separator.join(scopes[1:])
    elif kind == "string_expires_in" and "expires_in" in body:
        body["expires_in"] = str(body["expires_in"])
    elif kind == "missing_token_type":
        body.pop("token_type", None)
    return body


def misbehave_location(kind: str, location: str) -> str:
    """Authorization-response misbehaviours: drop ``iss`` or claim another issuer (mix-up)."""
    parts = urlsplit(location)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "iss"]
    if kind == "authorize_wrong_iss":
        query.append(("iss", "https://evil-as.example"))
    return urlunsplit(parts._replace(query=urlencode(query)))
