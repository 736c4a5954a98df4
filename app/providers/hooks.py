"""Named hooks for provider quirks that the catalog data cannot express.

A provider lists hook names under ``hooks:``; each name maps to a :class:`Hook` holding one or
more of these callables:

* ``template_values(inputs) -> dict`` — extra ``{placeholder}`` values for endpoint templates;
* ``verify_callback(params, client_secret, inputs)`` — check a provider-signed callback
  (raises :class:`~app.providers.errors.CallbackVerificationError`);
* ``fix_response(body) -> body`` — rewrite a decoded token-endpoint body before validation
  (synchronous, like authlib's compliance hooks);
* ``after_exchange(ctx, token) -> token`` — an extra token-endpoint round trip after the code
  exchange (e.g. Facebook's long-lived token exchange).

Keep hooks small and pure; everything that can be data belongs in ``catalog.yaml``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.providers.errors import CallbackVerificationError

TemplateValues = Callable[[Mapping[str, str]], dict[str, str]]
VerifyCallback = Callable[[str, Mapping[str, str], str, Mapping[str, str]], None]
FixResponse = Callable[[dict[str, Any]], dict[str, Any]]
AfterExchange = Callable[["ExchangeContext", dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ExchangeContext:
    """What an ``after_exchange`` hook may use: a token-endpoint caller bound to the app."""

    provider_key: str
    token_endpoint: str
    #: ``await post(params)`` sends one more form POST to the token endpoint with the
    #: provider's client authentication and returns the decoded, checked JSON body.
    post: Callable[[dict[str, str]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Hook:
    name: str
    provides: frozenset[str] = field(default_factory=frozenset)
    template_values: TemplateValues | None = None
    verify_callback: VerifyCallback | None = None
    fix_response: FixResponse | None = None
    after_exchange: AfterExchange | None = None


# --- Intercom: regional hosts -------------------------------------------------------------


def _intercom_region(inputs: Mapping[str, str]) -> dict[str, str]:
    region = inputs.get("region") or ""
    return {"region_prefix": f"{region}." if region else ""}


# --- Shopify: HMAC-signed callback ---------------------------------------------------------


def shopify_hmac_digest(params: Mapping[str, str], client_secret: str) -> str:
    """Shopify's callback signature: hex HMAC-SHA256 over the sorted query (minus ``hmac``)."""

    def esc(text: str, *, key: bool = False) -> str:
        text = text.replace("%", "%25").replace("&", "%26")
        return text.replace("=", "%3D") if key else text

    items = sorted((k, v) for k, v in params.items() if k not in {"hmac", "signature"})
    message = "&".join(f"{esc(k, key=True)}={esc(v)}" for k, v in items)
    return hmac.new(client_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def _shopify_verify(
    provider_key: str, params: Mapping[str, str], client_secret: str, inputs: Mapping[str, str]
) -> None:
    given = params.get("hmac") or ""
    expected = shopify_hmac_digest(params, client_secret)
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CallbackVerificationError(
            provider_key=provider_key, message="Shopify callback HMAC does not verify"
        )
    shop = inputs.get("shop")
    if shop and params.get("shop") != f"{shop}.myshopify.com":
        raise CallbackVerificationError(
            provider_key=provider_key, message="Shopify callback names a different shop"
        )


# --- TikTok: {"code": 0, "message": "OK", "data": {...}} envelope --------------------------


def _tiktok_envelope(body: dict[str, Any]) -> dict[str, Any]:
    code = body.get("code")
    if code not in (None, 0, "0"):
        # Errors come back as HTTP 200 with a non-zero code; surface them as OAuth errors.
        return {"error": "invalid_grant" if code in (40001, 40002, 40007) else "provider_error"}
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("scope"), list):
        data = {**data, "scope": ",".join(str(s) for s in data["scope"])}
        body = {**body, "data": data}
    return body


# --- Facebook: short-lived → long-lived user token -----------------------------------------


async def _facebook_long_lived(ctx: ExchangeContext, token: dict[str, Any]) -> dict[str, Any]:
    """Swap the short-lived user token for a ~60-day one (``grant_type=fb_exchange_token``)."""
    short = token.get("access_token")
    if not isinstance(short, str) or not short:
        return token
    longer = await ctx.post({"grant_type": "fb_exchange_token", "fb_exchange_token": short})
    merged = dict(token)
    merged.update({k: v for k, v in longer.items() if k in {"access_token", "expires_in"}})
    if "token_type" in longer:
        merged["token_type"] = longer["token_type"]
    return merged


HOOKS: dict[str, Hook] = {
    hook.name: hook
    for hook in (
        Hook(
            "intercom_region",
            provides=frozenset({"region_prefix"}),
            template_values=_intercom_region,
        ),
        Hook("shopify_hmac", verify_callback=_shopify_verify),
        Hook("tiktok_envelope", fix_response=_tiktok_envelope),
        Hook("facebook_long_lived", after_exchange=_facebook_long_lived),
    )
}


def get_hook(name: str) -> Hook | None:
    return HOOKS.get(name)
