"""Sandbox accounts and the identity each provider reports for them — a **simulation**.

The sandbox authorization server logs consent in as a *sandbox account* (a user name):
``sandbox-user`` by default, another one chosen on the consent page (``account``), with
``login_hint=auto:<name>``, or for every following consent through the control API
(``POST /sandbox/oauth/_control/account``). Everything a provider reveals about the
account is derived deterministically from ``(provider, account)``, in the provider's real
shape (see :mod:`app.providers.identity` and ``identity.yaml``):

* token-response fields: Salesforce's ``id`` URL (``/id/<org 00D…>/<user 005…>``) and
  ``instance_url``, Asana's ``data{id,gid,name,email}``, Dropbox ``account_id``, Notion
  ``workspace_id``/``workspace_name``, Calendly ``owner``/``organization`` URIs;
* an OpenID Connect ``id_token`` (Google ``sub``/``email``; Entra ``oid``/``tid``/
  ``preferred_username``) when ``openid`` was granted, signed HS256 with the client secret
  (the client does not check signatures of tokens it got straight from the token endpoint);
* identity endpoints under ``/sandbox/oauth/<provider>/api/<real path>`` (HubSpot's account
  info, Intercom ``/me``, Graph ``/me``, TikTok's ``Access-Token`` header …), answering the
  body the real endpoint answers;
* callback parameters (QuickBooks ``realmId``, Amazon ``selling_partner_id``).

Two sandbox accounts of the same provider always differ; the same account always gives the
same identity (re-authorization and duplicate tests rely on both).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import OctKey

from app.providers.spec import IdentitySpec

DEFAULT_ACCOUNT = "sandbox-user"
#: The accounts the consent page offers (any ``[a-z0-9-]`` name works through the hint).
ACCOUNTS = (DEFAULT_ACCOUNT, "second-account", "third-account")
ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

SALESFORCE_KEYS = frozenset({"salesforce", "salesforce_sandbox", "pardot", "pardot_sandbox"})
ENTRA_CLAIMS = frozenset({"oid", "tid", "preferred_username"})


def _seed(*parts: str) -> int:
    return int(hashlib.sha256("|".join(parts).encode()).hexdigest(), 16)


def digits(n: int, *parts: str) -> str:
    value = str(_seed(*parts))
    return ("1" + value)[:n]


def base62(n: int, *parts: str) -> str:
    value = _seed(*parts)
    out = []
    for _ in range(n):
        value, rest = divmod(value, 62)
        out.append(B62[rest])
    return "".join(out)


def guid(*parts: str) -> str:
    h = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def email(account: str) -> str:
    return f"{account}@sandbox.example"


def display_name(account: str) -> str:
    return " ".join(part.capitalize() for part in account.split("-"))


def _nest(doc: dict[str, Any], path: str, value: Any) -> None:
    """Put ``value`` at a dotted path (numeric parts make one-element lists)."""
    parts = path.split(".")
    current: Any = doc
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        nxt_is_list = not last and parts[index + 1].isdigit()
        if isinstance(current, list):
            while len(current) <= int(part):
                current.append({})
            if last:
                current[int(part)] = value
            else:
                if not isinstance(current[int(part)], (dict, list)):
                    current[int(part)] = [] if nxt_is_list else {}
                current = current[int(part)]
            continue
        if last:
            current.setdefault(part, value)
        else:
            current = current.setdefault(part, [] if nxt_is_list else {})


def generic_document(provider_key: str, account: str, spec: IdentitySpec) -> dict[str, Any]:
    """A document holding a generated id (and label) at the spec's paths."""
    doc: dict[str, Any] = {}
    if spec.id:
        _nest(doc, spec.id, digits(12, provider_key, account, "id"))
    if spec.label:
        _nest(doc, spec.label, email(account))
    return doc


# --- token response fields ----------------------------------------------------------------


def salesforce_ids(provider_key: str, account: str) -> tuple[str, str]:
    """``(org id, user id)``: 18-character ids with the real prefixes (00D org, 005 user)."""
    return "00D" + base62(15, provider_key, account, "org"), "005" + base62(
        15, provider_key, account, "user"
    )


def token_fields(provider_key: str, account: str, spec: IdentitySpec | None) -> dict[str, Any]:
    """Fields a provider's code-exchange response carries about the account."""
    if provider_key in SALESFORCE_KEYS:
        org, user = salesforce_ids(provider_key, account)
        host = "test.salesforce.com" if "sandbox" in provider_key else "login.salesforce.com"
        return {
            "id": f"https://{host}/id/{org}/{user}",
            "instance_url": f"https://{account}.my.salesforce.com",
        }
    if spec is None or spec.source != "token_response":
        return {}
    if provider_key == "asana":
        gid = digits(16, provider_key, account)
        return {
            "data": {
                "id": int(gid),
                "gid": gid,
                "name": display_name(account),
                "email": email(account),
            }
        }
    if provider_key == "dropbox":
        return {
            "account_id": "dbid:AA" + base62(38, provider_key, account),
            "uid": digits(9, provider_key, account),
        }
    if provider_key == "notion":
        return {
            "bot_id": guid(provider_key, account, "bot"),
            "workspace_id": guid(provider_key, account, "workspace"),
            "workspace_name": f"{display_name(account)}'s Notion",
            "workspace_icon": None,
            "owner": {"type": "user", "user": {"object": "user", "id": guid(account)}},
            "duplicated_template_id": None,
        }
    if provider_key == "calendly":
        return {
            "owner": f"https://api.calendly.com/users/{base62(16, account, 'user')}",
            "organization": "https://api.calendly.com/organizations/"
            + base62(16, provider_key, account, "org"),
            "owner_type": "users",
        }
    return generic_document(provider_key, account, spec)


# --- id_token -------------------------------------------------------------------------------


def id_token(
    provider_key: str,
    account: str,
    spec: IdentitySpec,
    *,
    issuer: str,
    client_id: str,
    client_secret: str,
) -> str:
    """An OpenID Connect id_token for the account (Google or Entra claims)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": client_id, "iat": now, "exp": now + 3600}
    if {spec.id, spec.label} & ENTRA_CLAIMS:
        tid = guid("tenant", account)
        oid = guid("user", account)  # one Entra user across all Microsoft providers
        claims.update(
            {
                "iss": f"https://login.microsoftonline.com/{tid}/v2.0",
                "tid": tid,
                "oid": oid,
                "sub": base62(43, provider_key, account),
                "preferred_username": email(account),
                "name": display_name(account),
                "ver": "2.0",
                "nbf": now,
            }
        )
    else:  # Google: one Google account across all Google providers
        claims.update(
            {
                "azp": client_id,
                "sub": digits(21, "google", account),
                "email": email(account),
                "email_verified": True,
                "at_hash": base62(22, secrets.token_hex(8)),
            }
        )
    key = OctKey.import_key(client_secret.encode())
    return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, key)


# --- callback parameters ----------------------------------------------------------------


def realm_id(account: str) -> str:
    digest = hashlib.sha256(account.encode()).hexdigest()
    return "9130" + str(int(digest[:12], 16))[:12]


def callback_params(
    provider_key: str, account: str, spec: IdentitySpec | None
) -> list[tuple[str, str]]:
    """Account parameters a provider adds to its authorization callback."""
    if provider_key == "quickbooks":
        return [("realmId", realm_id(account))]
    if spec is None or spec.source != "callback" or spec.id is None or provider_key == "shopify":
        return []
    if provider_key == "amazon_selling_partner":
        return [(spec.id, "A" + base62(13, provider_key, account).upper())]
    return [(spec.id, digits(12, provider_key, account))]


# --- identity endpoints -----------------------------------------------------------------


def endpoint_body(
    provider_key: str,
    account: str,
    spec: IdentitySpec,
    *,
    access_token: str,
    scope: str,
    client_id: str,
    expires_in: int,
) -> dict[str, Any]:
    """The identity endpoint's answer, in the provider's own shape."""
    name = display_name(account)
    mail = email(account)
    if provider_key == "hubspot":
        return {
            "portalId": int(digits(8, provider_key, account)),
            "accountType": "STANDARD",
            "timeZone": "Europe/London",
            "companyCurrency": "GBP",
            "additionalCurrencies": [],
            "utcOffset": "+00:00",
            "utcOffsetMilliseconds": 0,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }
    if provider_key == "intercom":
        return {
            "type": "admin",
            "id": digits(7, provider_key, account, "admin"),
            "email": mail,
            "name": name,
            "email_verified": True,
            "app": {
                "type": "app",
                "id_code": base62(8, provider_key, account).lower(),
                "name": f"{name} workspace",
                "region": "US",
                "timezone": "Europe/London",
                "created_at": 1_700_000_000,
                "identity_verification": False,
            },
            "avatar": {"type": "avatar", "image_url": None},
            "has_inbox_seat": True,
        }
    if provider_key in ("facebook_ads", "facebook_pages", "instagram_business"):
        return {"id": digits(16, "facebook", account), "name": name}
    if provider_key == "linkedin_ads":
        return {
            "elements": [
                {
                    "account": f"urn:li:sponsoredAccount:{digits(9, provider_key, account)}",
                    "user": f"urn:li:person:{base62(10, 'linkedin', account)}",
                    "role": "ACCOUNT_BILLING_ADMIN",
                    "changeAuditStamps": {"created": {"time": 1_700_000_000_000}},
                }
            ],
            "paging": {"count": 10, "start": 0, "total": 1, "links": []},
        }
    if provider_key == "pipedrive":
        return {
            "success": True,
            "data": {
                "id": int(digits(8, provider_key, account, "user")),
                "name": name,
                "email": mail,
                "company_id": int(digits(8, provider_key, account)),
                "company_name": f"{name} Ltd",
                "company_domain": account,
                "company_country": "GB",
                "language": {"language_code": "en", "country_code": "US"},
            },
        }
    if provider_key == "snapchat_ads":
        return {
            "request_status": "SUCCESS",
            "request_id": secrets.token_hex(16),
            "me": {
                "id": guid(provider_key, account, "user"),
                "updated_at": "2026-01-01T00:00:00.000Z",
                "created_at": "2025-01-01T00:00:00.000Z",
                "email": mail,
                "organization_id": guid(provider_key, account, "org"),
                "display_name": name,
                "member_status": "MEMBER",
            },
        }
    if provider_key == "tiktok_ads":
        return {
            "code": 0,
            "message": "OK",
            "request_id": secrets.token_hex(12),
            "data": {
                "core_user_id": digits(19, provider_key, account),
                "display_name": name,
                "email": mail,
                "avatar_url": None,
                "create_time": 1_700_000_000,
            },
        }
    if provider_key in ("pinterest_ads", "pinterest_organic"):
        return {
            "account_type": "BUSINESS",
            "id": digits(18, "pinterest", account),
            "username": account.replace("-", "_"),
            "profile_image": None,
            "website_url": None,
            "business_name": f"{name} Ltd",
        }
    if provider_key == "zoom":
        return {
            "id": base62(22, provider_key, account, "user"),
            "first_name": name.split(" ")[0],
            "last_name": name.partition(" ")[2],
            "email": mail,
            "type": 2,
            "account_id": base62(22, provider_key, account),
            "status": "active",
        }
    return generic_document(provider_key, account, spec)
