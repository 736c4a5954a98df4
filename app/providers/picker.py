"""Fetching the choices of a post-consent configuration (account pickers) from a provider.

A provider's :class:`~app.providers.spec.PickerSpec` (``pickers.yaml``) names, per Fivetran
config field, the provider's list endpoint and where value and label sit in its answer.
:func:`fetch_options` calls those endpoints with the connection's access token (redirects
not followed, explicit timeout, bounded pages) and returns ``{field: [Option]}``.

Failures are :class:`PickerError` with ``kind``:

* ``unauthorized`` — the provider refused the access token (401/403, or an error envelope);
  the caller refreshes or asks for re-authorization;
* ``failed`` — anything else (5xx, timeout, a body that is not the documented shape).

Nothing of the provider's answer except the chosen paths is kept, and no token is logged.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.providers.registry import AppCredentials, Provider
from app.providers.spec import PickerRequest, PickerSpec
from app.vault.secret import Secret

log = logging.getLogger("pbf.providers")

#: At most this many pages per list call, and choices per field.
MAX_PAGES = 20
MAX_OPTIONS = 2000
DEFAULT_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Option:
    value: str
    label: str


class PickerError(Exception):
    """A provider list call failed (``kind``: ``unauthorized`` | ``failed``)."""

    def __init__(self, kind: str, *, provider_key: str, field: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.provider_key = provider_key
        self.field = field
        self.detail = detail


def walk(body: Any, path: str) -> list[Any]:
    """Every value at ``path``: dotted keys, ``[]`` walks every element of a list
    (``accountSummaries[].propertySummaries[]``); ``""`` is ``body`` itself. Missing keys
    give nothing (an empty list is a valid answer)."""
    current: list[Any] = [body]
    if not path:
        return current
    for part in path.split("."):
        many = part.endswith("[]")
        key = part[:-2] if many else part
        nxt: list[Any] = []
        for node in current:
            if key and not isinstance(node, dict):
                raise ValueError(f"expected an object at {key!r}")
            value = node.get(key) if key else node
            if value is None:
                continue
            if many:
                if not isinstance(value, list):
                    raise ValueError(f"{key!r} is not a list")
                nxt.extend(value)
            else:
                nxt.append(value)
        current = nxt
    return current


def _one(body: Any, path: str) -> Any:
    values = walk(body, path)
    return values[0] if values else None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    return None


def options_from(request: PickerRequest, body: Any) -> list[Option]:
    """The choices of one decoded list answer (``ValueError`` when it is not the shape)."""
    pattern = re.compile(request.value_pattern) if request.value_pattern else None
    out: list[Option] = []
    for item in walk(body, request.items):
        raw = _scalar(_one(item, request.value) if request.value else item)
        if raw is None:
            continue
        value = raw
        if pattern is not None:
            match = pattern.fullmatch(raw)
            if match is None:
                continue
            value = match.group(1)
        label = _scalar(_one(item, request.label)) if request.label else None
        out.append(Option(value=value, label=label or value))
    return out


def _status_ok(request: PickerRequest, body: Any) -> bool:
    if request.status_path is None:
        return True
    status = _one(body, request.status_path)
    return any(str(status) == str(ok) for ok in request.status_ok)


def _request_parts(
    request: PickerRequest, access_token: Secret, credentials: AppCredentials
) -> tuple[dict[str, str], dict[str, str]]:
    headers = {"Accept": "application/json", **request.headers}
    token = access_token.reveal()
    scheme = request.token_scheme
    headers[request.token_header] = f"{scheme} {token}" if scheme else token
    for header, extra in request.app_headers.items():
        secret = credentials.extras.get(extra)
        if secret is not None:
            headers[header] = secret.reveal()
    query = dict(request.query)
    for param, which in request.credential_query.items():
        query[param] = (
            credentials.client_id if which == "client_id" else credentials.client_secret.reveal()
        )
    return headers, query


async def _fetch_field(
    client: httpx.AsyncClient,
    provider: Provider,
    field_name: str,
    request: PickerRequest,
    *,
    access_token: Secret,
    credentials: AppCredentials,
) -> list[Option]:
    headers, query = _request_parts(request, access_token, credentials)
    origin = urlsplit(request.url)
    url: str = request.url
    params: dict[str, str] | None = query
    out: list[Option] = []

    def fail(kind: str, detail: str) -> PickerError:
        return PickerError(kind, provider_key=provider.key, field=field_name, detail=detail)

    for _page in range(MAX_PAGES):
        try:
            response = await client.request(
                request.method,
                url,
                params=params,
                headers=headers,
                json=request.json_body if request.method == "POST" else None,
            )
        except httpx.HTTPError as exc:
            raise fail("failed", f"the list call did not complete ({type(exc).__name__})") from None
        if response.status_code in (401, 403):
            raise fail("unauthorized", f"the provider refused the token ({response.status_code})")
        try:
            body = response.json()
        except ValueError:
            body = None
        if _auth_error(request, body):
            raise fail("unauthorized", "the provider refused the token")
        if response.status_code != 200:
            raise fail("failed", f"the list call answered HTTP {response.status_code}")
        if body is None:
            raise fail("failed", "the list call answered something that is not JSON")
        if not _status_ok(request, body):
            raise fail("failed", "the list call answered an error")
        try:
            out.extend(options_from(request, body))
        except ValueError:
            raise fail("failed", "the list answer does not have the documented shape") from None
        if len(out) >= MAX_OPTIONS:
            break
        next_params, next_url = _next_page(request, body, query)
        if next_url is not None:
            parts = urlsplit(next_url)
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                raise fail("failed", "the next page points at another origin")
            url, params = next_url, None
        elif next_params is not None:
            params = next_params
        else:
            break
    return _dedupe(out)[:MAX_OPTIONS]


def _auth_error(request: PickerRequest, body: Any) -> bool:
    if request.auth_error_path is None or not isinstance(body, dict):
        return False
    try:
        value = _one(body, request.auth_error_path)
    except ValueError:
        return False
    return value is not None and any(str(value) == str(v) for v in request.auth_error_values)


def _next_page(
    request: PickerRequest, body: Any, query: dict[str, str]
) -> tuple[dict[str, str] | None, str | None]:
    if request.next_url is not None:
        value = _scalar(_one(body, request.next_url))
        return None, value or None
    if request.next_token is not None and request.next_token_param is not None:
        token = _scalar(_one(body, request.next_token))
        if token:
            return {**query, request.next_token_param: token}, None
    return None, None


def _dedupe(options: list[Option]) -> list[Option]:
    seen: set[str] = set()
    out: list[Option] = []
    for option in options:
        if option.value not in seen:
            seen.add(option.value)
            out.append(option)
    return out


async def fetch_options(
    provider: Provider,
    picker: PickerSpec,
    *,
    access_token: Secret,
    credentials: AppCredentials,
    transport: httpx.AsyncBaseTransport | None,
    timeout_seconds: float | None = None,
) -> dict[str, list[Option]]:
    """``{field: [Option]}`` for every picker field (see the module docstring)."""
    seconds = timeout_seconds or provider.timeout_seconds or DEFAULT_TIMEOUT_SECONDS

    async def label(request: httpx.Request) -> None:
        request.extensions["pbf_target"] = f"provider_api:{provider.key}"

    async with httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(seconds, connect=min(seconds, 10.0)),
        follow_redirects=False,
        trust_env=False,
        event_hooks={"request": [label]},
    ) as client:
        cache: dict[str, list[Option]] = {}
        out: dict[str, list[Option]] = {}
        for item in picker.fields:
            key = item.request.model_dump_json()
            if key not in cache:
                cache[key] = await _fetch_field(
                    client,
                    provider,
                    item.name,
                    item.request,
                    access_token=access_token,
                    credentials=credentials,
                )
            out[item.name] = cache[key]
    return out
