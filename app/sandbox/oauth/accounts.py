"""Simulated provider list endpoints (account pickers) — a **simulation** for the sandbox.

After consent, sources such as Google Ads or Facebook Ads need the end-user to choose what to
sync (customer ids, ad accounts, GA4 properties, Search Console sites …). The real providers
list those choices at their API; in sandbox mode the picker's list URLs point here instead
(``/sandbox/oauth/<provider>/api/<host>/<path>``, see
:func:`app.providers.startup.sandbox_list_url`), the same way the OAuth endpoints point at the
sandbox authorization server.

Each endpoint checks the access token against the sandbox authorization server's store
(issued to this provider's sandbox client, not expired, not revoked) and answers in the real
provider's response shape — including its way of refusing a token (Google/LinkedIn/Pinterest
401, Facebook HTTP 400 with ``error.code`` 190, TikTok HTTP 200 with ``code`` 40105). The
accounts are invented, deterministic per sandbox user (``login_hint=auto:<user>``), and
nothing here talks to a real provider.

Test control: ``POST /_control/misbehave`` with kind ``list_502`` (an HTML 502) or
``list_malformed`` (a 200 that is not the documented shape) for the next list calls.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from app.sandbox.oauth.store import IssuedToken, SandboxStore

NO_STORE = {"Cache-Control": "no-store"}
#: Names of the invented accounts (the sandbox user's "businesses").
NAMES = ("Acme Retail", "Acme Outlet EU", "Acme Brand Awareness")


def _digits(seed: str, length: int) -> str:
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:12], "big")
    text = str(digest).rjust(length, "7")[-length:]
    return ("9" + text[1:]) if text[0] == "0" else text


def _ids(provider_key: str, user: str, length: int) -> list[str]:
    return [_digits(f"{provider_key}:{user}:{i}", length) for i in range(len(NAMES))]


def _uuids(provider_key: str, user: str, kind: str) -> list[str]:
    return [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox:{provider_key}:{user}:{kind}:{i}"))
        for i in range(len(NAMES))
    ]


def _token_from(request: Request, provider_key: str) -> str | None:
    if provider_key == "tiktok_ads":
        return request.headers.get("access-token") or None
    header = request.headers.get("authorization") or ""
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _valid_token(store: SandboxStore, client_id: str, token: str | None) -> IssuedToken | None:
    issued = store.access_tokens.get(token or "")
    if (
        issued is None
        or issued.client_id != client_id
        or issued.is_revoked()
        or issued.is_expired()
        or not store.grant_active(issued.grant_id)
    ):
        return None
    return issued


def _refused(provider_key: str) -> Response:
    """The provider's own way of refusing an access token."""
    if provider_key == "facebook_ads":
        return JSONResponse(
            {
                "error": {
                    "message": "Error validating access token: The session is invalid.",
                    "type": "OAuthException",
                    "code": 190,
                    "fbtrace_id": "SandboxTrace",
                }
            },
            400,
            NO_STORE,
        )
    if provider_key == "tiktok_ads":
        return JSONResponse(
            {
                "code": 40105,
                "message": "Access token is incorrect or has been revoked.",
                "request_id": "sandbox",
                "data": {},
            },
            200,
            NO_STORE,
        )
    if provider_key == "snapchat_ads":
        return JSONResponse(
            {"request_status": "ERROR", "request_id": "sandbox", "display_message": "Unauthorized"},
            401,
            NO_STORE,
        )
    if provider_key == "bingads":
        return JSONResponse(
            {"Errors": [{"Code": 105, "ErrorCode": "InvalidCredentials"}], "Type": "AdApiFault"},
            401,
            NO_STORE,
        )
    return JSONResponse(
        {
            "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }
        },
        401,
        NO_STORE,
    )


def _not_found() -> Response:
    return JSONResponse({"error": {"code": 404, "message": "Not found"}}, 404, NO_STORE)


def answer(
    provider_key: str,
    path: str,
    request: Request,
    *,
    user: str,
    client_id: str,
    client_secret: str,
    body: Any,
) -> Response:
    """The simulated list answer of ``provider_key`` for ``path`` (``<host>/<path>``)."""
    host, _, rest = path.partition("/")
    rest = "/" + rest
    q = request.query_params
    if provider_key == "google_ads" and host == "googleads.googleapis.com":
        if not rest.endswith("/customers:listAccessibleCustomers") or request.method != "GET":
            return _not_found()
        ids = _ids(provider_key, user, 10)
        return JSONResponse({"resourceNames": [f"customers/{i}" for i in ids]}, 200, NO_STORE)
    if provider_key == "google_analytics_4" and host == "analyticsadmin.googleapis.com":
        if rest != "/v1beta/accountSummaries":
            return _not_found()
        accounts = _ids(provider_key, user, 9)
        props = _ids(provider_key + ":p", user, 9)
        summaries = []
        for index, account in enumerate(accounts[:2]):
            mine = props[index * 2 : index * 2 + 2] if index == 0 else props[2:3]
            summaries.append(
                {
                    "name": f"accountSummaries/{account}",
                    "account": f"accounts/{account}",
                    "displayName": NAMES[index],
                    "propertySummaries": [
                        {
                            "property": f"properties/{p}",
                            "displayName": f"{NAMES[index]} – {('Web', 'App', 'Shop')[n]}",
                            "propertyType": "PROPERTY_TYPE_ORDINARY",
                            "parent": f"accounts/{account}",
                        }
                        for n, p in enumerate(mine)
                    ],
                }
            )
        return JSONResponse({"accountSummaries": summaries}, 200, NO_STORE)
    if provider_key == "google_search_console" and host == "www.googleapis.com":
        if rest != "/webmasters/v3/sites":
            return _not_found()
        slug = user.replace("_", "-").lower()
        return JSONResponse(
            {
                "siteEntry": [
                    {"siteUrl": f"https://www.{slug}.example/", "permissionLevel": "siteOwner"},
                    {"siteUrl": f"sc-domain:{slug}.example", "permissionLevel": "siteOwner"},
                    {"siteUrl": f"https://shop.{slug}.example/", "permissionLevel": "siteFullUser"},
                ]
            },
            200,
            NO_STORE,
        )
    if provider_key == "facebook_ads" and host == "graph.facebook.com":
        if not rest.endswith("/me/adaccounts"):
            return _not_found()
        ids = _ids(provider_key, user, 15)
        data = [{"account_id": i, "name": NAMES[n], "id": f"act_{i}"} for n, i in enumerate(ids)]
        return JSONResponse(
            {"data": data, "paging": {"cursors": {"before": "QVFI-b", "after": "QVFI-a"}}},
            200,
            NO_STORE,
        )
    if provider_key == "linkedin_ads" and host == "api.linkedin.com":
        if rest != "/rest/adAccounts" or q.get("q") != "search":
            return _not_found()
        if not request.headers.get("linkedin-version"):
            return JSONResponse(
                {"status": 426, "code": "VERSION_MISSING", "message": "A version must be present."},
                426,
                NO_STORE,
            )
        ids = _ids(provider_key, user, 9)
        return JSONResponse(
            {
                "elements": [
                    {
                        "id": int(i),
                        "name": NAMES[n],
                        "status": "ACTIVE",
                        "type": "BUSINESS",
                        "currency": "USD",
                        "reference": f"urn:li:organization:{_digits(i, 8)}",
                        "test": False,
                    }
                    for n, i in enumerate(ids)
                ],
                "metadata": {},
                "paging": {"start": 0, "count": len(ids), "links": []},
            },
            200,
            NO_STORE,
        )
    if provider_key == "bingads" and host == "clientcenter.api.bingads.microsoft.com":
        if rest != "/CustomerManagement/v13/AccountsInfo/Query" or request.method != "POST":
            return _not_found()
        ids = _ids(provider_key, user, 9)
        return JSONResponse(
            {
                "AccountsInfo": [
                    {
                        "Id": int(i),
                        "Name": NAMES[n],
                        "Number": f"F{i[:7]}",
                        "AccountLifeCycleStatus": "Active",
                        "PauseReason": None,
                    }
                    for n, i in enumerate(ids)
                ]
            },
            200,
            NO_STORE,
        )
    if provider_key == "tiktok_ads" and host == "business-api.tiktok.com":
        if rest != "/open_api/v1.3/oauth2/advertiser/get/":
            return _not_found()
        if q.get("app_id") != client_id or q.get("secret") != client_secret:
            return JSONResponse(
                {"code": 40001, "message": "app_id or secret is invalid", "data": {}}, 200
            )
        ids = _ids(provider_key, user, 19)
        return JSONResponse(
            {
                "code": 0,
                "message": "OK",
                "request_id": f"sandbox-{int(time.time())}",
                "data": {
                    "list": [
                        {"advertiser_id": i, "advertiser_name": NAMES[n]} for n, i in enumerate(ids)
                    ]
                },
            },
            200,
            NO_STORE,
        )
    if provider_key == "snapchat_ads" and host == "adsapi.snapchat.com":
        if rest != "/v1/me/organizations":
            return _not_found()
        org = _uuids(provider_key, user, "org")[0]
        accounts = _uuids(provider_key, user, "ad_account")
        return JSONResponse(
            {
                "request_status": "SUCCESS",
                "request_id": "sandbox",
                "organizations": [
                    {
                        "sub_request_status": "SUCCESS",
                        "organization": {
                            "id": org,
                            "name": "Acme Corp",
                            "type": "ENTERPRISE",
                            "ad_accounts": [
                                {
                                    "id": a,
                                    "name": NAMES[n],
                                    "type": "PARTNER",
                                    "status": "ACTIVE",
                                    "organization_id": org,
                                    "currency": "USD",
                                }
                                for n, a in enumerate(accounts)
                            ]
                            if q.get("with_ad_accounts") == "true"
                            else [],
                        },
                    }
                ],
            },
            200,
            NO_STORE,
        )
    if provider_key == "pinterest_ads" and host == "api.pinterest.com":
        if rest != "/v5/ad_accounts":
            return _not_found()
        ids = _ids(provider_key, user, 12)
        return JSONResponse(
            {
                "items": [
                    {
                        "id": i,
                        "name": NAMES[n],
                        "owner": {"username": user, "id": _digits(user, 18)},
                        "country": "US",
                        "currency": "USD",
                        "permissions": ["OWNER"],
                    }
                    for n, i in enumerate(ids)
                ],
                "bookmark": None,
            },
            200,
            NO_STORE,
        )
    return _not_found()


def list_response(
    store: SandboxStore,
    provider_key: str,
    path: str,
    request: Request,
    *,
    client_id: str,
    client_secret: str,
    body: Any,
) -> Response:
    """Token check, misbehaviour, then :func:`answer`."""
    kind = store.pop_misbehaviour(provider_key, stage="list")
    if kind == "list_502":
        return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
    issued = _valid_token(store, client_id, _token_from(request, provider_key))
    if issued is None:
        return _refused(provider_key)
    if kind == "list_malformed":
        # Every provider's list container present, none of the documented type.
        return JSONResponse(
            {
                "code": 0,
                "request_status": "SUCCESS",
                "resourceNames": "customers/1",
                "accountSummaries": 1,
                "siteEntry": 1,
                "data": 7,
                "elements": 1,
                "AccountsInfo": 1,
                "items": "not-a-list",
                "organizations": 1,
            },
            200,
        )
    grant = store.grants.get(issued.grant_id)
    user = grant.user.username if grant is not None else "sandbox-user"
    return answer(
        provider_key,
        path,
        request,
        user=user,
        client_id=client_id,
        client_secret=client_secret,
        body=body,
    )
