"""The provider-side identity of a connected account (who the end-user consented as).

Each provider declares in catalog data (:class:`~app.providers.spec.IdentitySpec`,
``identity.yaml``) where the account id and a display label come from: the token response,
a claim of the OpenID Connect ``id_token``, an identity call, a verified callback parameter
or an end-user input — or ``none``. :func:`resolve_identity` turns one code exchange into an
:class:`AccountIdentity` (``None`` for ``none``) or raises :class:`IdentityError`
(``identity_unavailable``): a declared source that yields no usable id fails closed.

The ``id_token`` arrives directly from the token endpoint over TLS in the code flow, so its
signature is not checked (OpenID Connect Core §3.1.3.7 point 6); ``aud`` must contain our
client id and ``exp`` must lie in the future (``iss`` is not compared: multi-tenant issuers
such as Entra's ``common`` name the user's own tenant in it). The account id and label are
personal data: never logged here.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from app.providers.registry import Provider, render_template
from app.providers.spec import IdentitySpec
from app.providers.tokens import TokenResult

#: Longest account id / label kept (columns are this wide).
MAX_ID_LENGTH = 255
MAX_LABEL_LENGTH = 255
#: Largest identity answer read (bytes).
MAX_BODY_BYTES = 256_000


class IdentityError(Exception):
    """The declared identity source gave no usable account id (fail closed)."""

    code = "identity_unavailable"

    def __init__(self, provider_key: str, reason: str) -> None:
        super().__init__(f"{provider_key}: account identity unavailable ({reason})")
        self.provider_key = provider_key
        self.reason = reason


@dataclass(frozen=True)
class AccountIdentity:
    """The connected account: a stable provider-side id and a display label."""

    id: str
    label: str | None

    def __repr__(self) -> str:  # personal data: never in a repr that may reach a log
        return "AccountIdentity(<redacted>)"

    def public(self) -> dict[str, str | None]:
        return {"id": self.id, "label": self.label}


def lookup(data: Any, path: str) -> Any:
    """The value at a dotted path (``data.gid``, ``elements.0.user``); ``None`` if absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit():
            index = int(part)
            current = current[index] if index < len(current) else None
        else:
            return None
        if current is None:
            return None
    return current


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def decode_id_token(id_token: str) -> dict[str, Any]:
    """The claims of a compact JWS (payload only; see the module docstring)."""
    parts = id_token.split(".")
    if len(parts) != 3:
        raise ValueError("id_token is not a compact JWS")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("id_token payload is not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise ValueError("id_token payload is not a JSON object")
    return claims


def check_id_token_claims(
    claims: Mapping[str, Any], *, client_id: str, now: float | None = None
) -> None:
    """``aud`` holds our client id and ``exp`` is in the future."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if client_id not in audiences:
        raise ValueError("id_token audience is not this client")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= (now if now is not None else time.time()):
        raise ValueError("id_token expired")


def extract(
    spec: IdentitySpec,
    *,
    provider_key: str,
    document: Mapping[str, Any] | None,
) -> AccountIdentity:
    """The identity from ``document`` (token response, id_token claims, identity answer,
    callback query or inputs, whichever ``spec.source`` names). Pure; raises
    :class:`IdentityError` without a usable id."""
    if spec.source == "none" or spec.id is None:
        raise IdentityError(provider_key, "no identity source")
    if document is None:
        raise IdentityError(provider_key, f"no {spec.source} to read")
    raw_id = _scalar(lookup(document, spec.id))
    if raw_id is None:
        raise IdentityError(provider_key, f"{spec.source} has no {spec.id!r}")
    if spec.id_pattern is not None:
        match = re.search(spec.id_pattern, raw_id)
        if match is None:
            raise IdentityError(provider_key, f"{spec.id!r} does not match id_pattern")
        raw_id = match.group(1)
    if len(raw_id) > MAX_ID_LENGTH:
        raise IdentityError(provider_key, "account id too long")
    label = _scalar(lookup(document, spec.label)) if spec.label else None
    if spec.label_format:
        label = spec.label_format.format(id=raw_id, label=label or "")
    if label is not None:
        label = label[:MAX_LABEL_LENGTH]
    return AccountIdentity(id=raw_id, label=label or None)


async def _call_endpoint(
    provider: Provider,
    spec: IdentitySpec,
    *,
    token_result: TokenResult,
    inputs: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None,
    timeout_seconds: float,
) -> Mapping[str, Any]:
    assert spec.url is not None and token_result.access_token is not None
    token = token_result.access_token.reveal()
    url = render_template(spec.url, provider.template_values(inputs))
    headers = {"Accept": "application/json", **spec.headers}
    if spec.auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    else:
        headers[spec.auth.split(":", 1)[1]] = token
    async with httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
        follow_redirects=False,
        trust_env=False,
    ) as client:
        try:
            resp = await client.request(
                spec.method,
                url,
                headers=headers,
                extensions={"pbf_target": f"identity:{provider.key}"},
            )
        except httpx.HTTPError as exc:
            raise IdentityError(
                provider.key, f"identity call failed ({type(exc).__name__})"
            ) from None
    if resp.status_code != 200:
        raise IdentityError(provider.key, f"identity call answered HTTP {resp.status_code}")
    if len(resp.content) > MAX_BODY_BYTES:
        raise IdentityError(provider.key, "identity answer too large")
    try:
        body = resp.json()
    except ValueError:
        raise IdentityError(provider.key, "identity answer is not JSON") from None
    if not isinstance(body, dict):
        raise IdentityError(provider.key, "identity answer is not a JSON object")
    return body


async def resolve_identity(
    provider: Provider,
    token_result: TokenResult,
    *,
    callback_params: Mapping[str, str],
    inputs: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_seconds: float | None = None,
) -> AccountIdentity | None:
    """The account behind a fresh code exchange; ``None`` when the provider declares no
    identity source. Raises :class:`IdentityError` when a declared source fails."""
    spec = provider.spec.identity
    if spec.source == "none":
        return None
    document: Mapping[str, Any] | None
    if spec.source == "token_response":
        document = token_result.response_fields
    elif spec.source == "id_token":
        raw = token_result.id_token
        if raw is None:
            raise IdentityError(provider.key, "the token response has no id_token")
        try:
            claims = decode_id_token(raw.reveal())
            check_id_token_claims(claims, client_id=token_result.client_id)
        except ValueError as exc:
            raise IdentityError(provider.key, str(exc)) from None
        document = claims
    elif spec.source == "callback":
        document = callback_params
    elif spec.source == "input":
        document = dict(inputs)
    else:
        document = await _call_endpoint(
            provider,
            spec,
            token_result=token_result,
            inputs=inputs,
            transport=transport,
            timeout_seconds=timeout_seconds or provider.timeout_seconds or 15.0,
        )
    return extract(spec, provider_key=provider.key, document=document)
