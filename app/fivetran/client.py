"""Async client for the Fivetran REST API on the shared ``httpx.AsyncClient``.

One response choke point (:meth:`FivetranClient._request`) does everything that is not
specific to an operation:

* Basic auth, JSON bodies, ``Accept: application/json;version=2`` on exactly the operations
  where Fivetran's definition sets it (connections list/create/get/patch/delete, sync, resync,
  test, destinations create/get/patch/delete/test), ``application/json`` elsewhere;
* the client-side hourly budget (:mod:`app.fivetran.budget`) before every attempt;
* ``429`` → wait ``Retry-After`` (when it is at most ``max_retry_after`` seconds) and retry —
  also for creates, since a 429 was not processed;
* ``5xx`` / transport errors / timeouts → jittered exponential backoff, **only** for idempotent
  operations (GET, PATCH, DELETE, sync, resync, tests, reload);
* a ``DELETE`` retried after an unanswered attempt that now gets 404 counts as done;
* a create (``POST`` that makes something) is never re-sent after it may have reached
  Fivetran: a timeout, a 5xx or a broken connection after sending raises
  :class:`~app.fivetran.errors.FivetranAmbiguous`; a connect error (nothing sent) is retried;
* errors keyed on HTTP status + ``code`` (:mod:`app.fivetran.errors`), carrying Fivetran's
  message and request id, never our request body or credentials;
* every request carries ``extensions={"pbf_target": "fivetran"}`` so ``/metrics`` counts it.

Returns the ``data`` object of Fivetran's ``{code, message, data}`` envelope (the whole
envelope minus nothing for action endpoints without ``data``); lists follow ``next_cursor``
(``nextCursor`` tolerated).
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import quote

import httpx

from app.fivetran.budget import LocalTokenBucket, RequestBudget
from app.fivetran.errors import (
    FivetranAmbiguous,
    FivetranError,
    FivetranTooManyRequests,
    FivetranUnavailable,
    error_for,
)
from app.fivetran.payloads import validate_create_payload
from app.kit.transport import retry_after_seconds

log = logging.getLogger("pbf.fivetran")

Sleep = Callable[[float], Awaitable[None]]
V1 = "application/json"
V2 = "application/json;version=2"
EXTENSIONS = {"pbf_target": "fivetran"}


#: Requests sent by this task while :func:`counting_requests` is active (else None).
_SENT: ContextVar[list[int] | None] = ContextVar("pbf_fivetran_sent", default=None)


@contextmanager
def counting_requests() -> Iterator[list[int]]:
    """Count the requests (every attempt, retries included) this task sends to Fivetran
    inside the block: ``with counting_requests() as sent: ...; sent[0]``."""
    sent = [0]
    token = _SENT.set(sent)
    try:
        yield sent
    finally:
        _SENT.reset(token)


def _q(value: str) -> str:
    return quote(value, safe="")


class FivetranClient:
    """Typed async client; see the module docstring for the behaviour of every call."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_after: float = 60.0,
        budget: RequestBudget | None = None,
        page_size: int = 1000,
        backoff_base: float = 0.5,
        backoff_cap: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self._auth_header = f"Basic {token}"
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        self.budget: RequestBudget = budget or LocalTokenBucket(
            18_000, max_wait=max_retry_after, sleep=sleep
        )
        self.page_size = page_size
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = rng
        self._close_hooks: list[Callable[[], Awaitable[None]]] = []

    def __repr__(self) -> str:  # never show the credentials
        return f"FivetranClient(base_url={self.base_url!r})"

    def on_close(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` at :meth:`aclose` (before the shared http client is closed)."""
        self._close_hooks.append(hook)

    async def aclose(self) -> None:
        """Run the close hooks and release the budget (the shared http client is not ours)."""
        for hook in self._close_hooks:
            try:
                await hook()
            except Exception:
                log.exception("fivetran client close hook failed")
        await self.budget.aclose()

    # --------------------------------------------------------------------------------------
    # The choke point

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2**attempt))
        return ceiling / 2 + self._rng() * ceiling / 2  # "equal jitter"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        version2: bool = False,
        idempotent: bool = True,
        send_body: bool = False,
    ) -> dict[str, Any]:
        url = self.base_url + path
        headers = {"Authorization": self._auth_header, "Accept": V2 if version2 else V1}
        content: bytes | None = None
        if json is not None or send_body:
            content = jsonlib.dumps(json if json is not None else {}).encode()
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        maybe_done = False  # an earlier attempt may have been processed
        while True:
            await self.budget.acquire()
            sent = _SENT.get()
            if sent is not None:
                sent[0] += 1
            try:
                async with asyncio.timeout(self.timeout):
                    response = await self._http.request(
                        method,
                        url,
                        content=content,
                        params=query or None,
                        headers=headers,
                        extensions=dict(EXTENSIONS),
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Nothing reached Fivetran: safe to retry even a create.
                if attempt < self.max_retries:
                    await self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise FivetranUnavailable(
                    0,
                    "Unavailable",
                    f"cannot connect ({type(exc).__name__})",
                    None,
                    method=method,
                    path=path,
                ) from None
            except (httpx.TransportError, TimeoutError) as exc:
                what = (
                    "timed out"
                    if isinstance(exc, TimeoutError | httpx.TimeoutException)
                    else (f"transport error ({type(exc).__name__})")
                )
                if not idempotent:
                    raise FivetranAmbiguous(
                        0,
                        "Ambiguous",
                        f"create {what} after sending; outcome unknown",
                        None,
                        method=method,
                        path=path,
                    ) from None
                if attempt < self.max_retries:
                    await self._sleep(self._backoff(attempt))
                    attempt += 1
                    maybe_done = True
                    continue
                raise FivetranUnavailable(
                    0, "Unavailable", what, None, method=method, path=path
                ) from None

            status = response.status_code
            if status < 400:
                return self._data(response)
            code, message, request_id = self._error_fields(response)
            if status == 404 and method == "DELETE" and maybe_done:
                # The earlier, unanswered attempt did delete it: the goal is reached.
                return {"code": "Success", "message": "Already deleted"}
            if status == 429:
                wait = retry_after_seconds(response)
                delay = wait if wait is not None else self._backoff(attempt)
                if attempt < self.max_retries and delay <= self.max_retry_after:
                    log.info("fivetran 429 on %s %s; waiting %.1fs", method, path, delay)
                    await self._sleep(delay)
                    attempt += 1
                    continue
                raise FivetranTooManyRequests(
                    status,
                    code,
                    message,
                    request_id,
                    retry_after=wait,
                    method=method,
                    path=path,
                )
            if status >= 500:
                if not idempotent:
                    raise FivetranAmbiguous(
                        status,
                        code or "ServerError",
                        f"create got HTTP {status} after sending; outcome unknown: {message}",
                        request_id,
                        method=method,
                        path=path,
                    )
                if attempt < self.max_retries:
                    await self._sleep(self._backoff(attempt))
                    attempt += 1
                    maybe_done = True
                    continue
            raise error_for(status, code, message, request_id, method=method, path=path)

    @staticmethod
    def _error_fields(response: httpx.Response) -> tuple[str | None, str, str | None]:
        request_id = response.headers.get("X-Request-Id")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            code = body.get("code") if isinstance(body.get("code"), str) else None
            message = body.get("message") if isinstance(body.get("message"), str) else ""
            request_id = body.get("request_id") or request_id
            return code, message or response.reason_phrase, request_id
        return None, response.reason_phrase or f"HTTP {response.status_code}", request_id

    @staticmethod
    def _data(response: httpx.Response) -> dict[str, Any]:
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise FivetranError(
                response.status_code, "InvalidResponse", "response is not JSON", None
            ) from exc
        if not isinstance(body, dict):
            return {"items": body} if isinstance(body, list) else {}
        data = body.get("data")
        if isinstance(data, dict):
            return data
        # Action endpoints answer {code, message} only (and the fingerprint POST a bare item).
        return body

    async def _paginate(
        self, path: str, params: dict[str, Any] | None = None, *, version2: bool = False
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            query = dict(params or {})
            query["limit"] = self.page_size
            if cursor:
                query["cursor"] = cursor
            data = await self._request("GET", path, params=query, version2=version2)
            items.extend(data.get("items") or [])
            nxt = data.get("next_cursor") or data.get("nextCursor")
            if not nxt or nxt in seen:
                return items
            seen.add(nxt)
            cursor = nxt

    # --------------------------------------------------------------------------------------
    # Account

    async def account_info(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/account/info")

    # Groups

    async def create_group(self, name: str) -> dict[str, Any]:
        return await self._request("POST", "/v1/groups", json={"name": name}, idempotent=False)

    async def get_group(self, id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/groups/{_q(id)}")

    async def list_groups(self) -> list[dict[str, Any]]:
        return await self._paginate("/v1/groups")

    async def delete_group(self, id: str) -> dict[str, Any]:
        return await self._request("DELETE", f"/v1/groups/{_q(id)}")

    async def list_group_connections(
        self, group_id: str, schema: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._paginate(f"/v1/groups/{_q(group_id)}/connections", {"schema": schema})

    async def group_public_key(self, group_id: str) -> str:
        data = await self._request("GET", f"/v1/groups/{_q(group_id)}/public-key")
        return str(data["public_key"])

    # Destinations

    async def create_destination(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request(
            "POST", "/v1/destinations", json=body, version2=True, idempotent=False
        )

    async def get_destination(self, id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/destinations/{_q(id)}", version2=True)

    async def delete_destination(self, id: str) -> dict[str, Any]:
        return await self._request("DELETE", f"/v1/destinations/{_q(id)}", version2=True)

    async def test_destination(
        self, id: str, *, trust_certificates: bool = False, trust_fingerprints: bool = False
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/destinations/{_q(id)}/test",
            json={
                "trust_certificates": trust_certificates,
                "trust_fingerprints": trust_fingerprints,
            },
            version2=True,
        )

    # Connections

    async def create_connection(
        self, body: dict[str, Any], *, validate: bool = True
    ) -> dict[str, Any]:
        """Create; raises FivetranAmbiguous if the outcome is unknown (see find_connection).

        The body is validated against the service's schema first (``PayloadError`` names the
        field; nothing is sent) unless ``validate=False``."""
        if validate:
            validate_create_payload(body)
        return await self._request(
            "POST", "/v1/connections", json=body, version2=True, idempotent=False
        )

    async def get_connection(self, id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/connections/{_q(id)}", version2=True)

    async def list_connections(
        self, group_id: str | None = None, schema: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._paginate(
            "/v1/connections", {"group_id": group_id, "schema": schema}, version2=True
        )

    async def find_connection(self, group_id: str, schema: str) -> dict[str, Any] | None:
        """The connection of ``group_id`` whose ``schema`` is ``schema``, or None."""
        for item in await self.list_group_connections(group_id, schema=schema):
            if item.get("schema") == schema:
                return item
        return None

    async def update_connection(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", f"/v1/connections/{_q(id)}", json=body, version2=True)

    async def delete_connection(self, id: str) -> dict[str, Any]:
        return await self._request("DELETE", f"/v1/connections/{_q(id)}", version2=True)

    async def sync_connection(self, id: str, force: bool = False) -> dict[str, Any]:
        return await self._request(
            "POST", f"/v1/connections/{_q(id)}/sync", json={"force": force}, version2=True
        )

    async def resync_connection(
        self, id: str, scope: dict[str, list[str]] | None = None
    ) -> dict[str, Any]:
        body = {"scope": scope} if scope is not None else None
        return await self._request(
            "POST", f"/v1/connections/{_q(id)}/resync", json=body, version2=True, send_body=True
        )

    async def run_setup_tests(
        self, id: str, trust_certificates: bool = False, trust_fingerprints: bool = False
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/connections/{_q(id)}/test",
            json={
                "trust_certificates": trust_certificates,
                "trust_fingerprints": trust_fingerprints,
            },
            version2=True,
        )

    async def connect_card(
        self, id: str, *, redirect_uri: str, hide_setup_guide: bool | None = None
    ) -> dict[str, Any]:
        """A Connect Card for connection ``id`` (``POST /v1/connections/{id}/connect-card``):
        ``{connector_id, connect_card: {token, uri}, connect_card_config}``; Fivetran sends
        the browser to ``redirect_uri`` after a successful setup. Safe to retry (a new card)."""
        config: dict[str, Any] = {"redirect_uri": redirect_uri}
        if hide_setup_guide is not None:
            config["hide_setup_guide"] = hide_setup_guide
        return await self._request(
            "POST",
            f"/v1/connections/{_q(id)}/connect-card",
            json={"connect_card_config": config},
            version2=True,
        )

    # Schema config

    async def get_schema_config(self, id: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/connections/{_q(id)}/schemas")

    async def update_schema_config(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", f"/v1/connections/{_q(id)}/schemas", json=body)

    async def reload_schema_config(self, id: str, exclude_mode: str = "PRESERVE") -> dict[str, Any]:
        return await self._request(
            "POST", f"/v1/connections/{_q(id)}/schemas/reload", json={"exclude_mode": exclude_mode}
        )

    # Certificates / fingerprints

    async def approve_certificate(self, id: str, hash: str, encoded_cert: str) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/connections/{_q(id)}/certificates",
            json={"hash": hash, "encoded_cert": encoded_cert},
        )

    async def approve_fingerprint(self, id: str, hash: str, public_key: str) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/connections/{_q(id)}/fingerprints",
            json={"hash": hash, "public_key": public_key},
        )

    # Webhooks

    @staticmethod
    def _webhook_body(
        url: str, events: list[str], secret: str | None, active: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"url": url, "events": list(events), "active": active}
        if secret is not None:
            body["secret"] = secret
        return body

    async def create_account_webhook(
        self, url: str, events: list[str], secret: str | None = None, active: bool = True
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            "/v1/webhooks/account",
            json=self._webhook_body(url, events, secret, active),
            idempotent=False,
        )

    async def create_group_webhook(
        self,
        group_id: str,
        url: str,
        events: list[str],
        secret: str | None = None,
        active: bool = True,
    ) -> dict[str, Any]:
        return await self._request(
            "POST",
            f"/v1/webhooks/group/{_q(group_id)}",
            json=self._webhook_body(url, events, secret, active),
            idempotent=False,
        )

    async def update_webhook(self, id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("PATCH", f"/v1/webhooks/{_q(id)}", json=body)

    async def list_webhooks(self) -> list[dict[str, Any]]:
        return await self._paginate("/v1/webhooks")

    async def delete_webhook(self, id: str) -> dict[str, Any]:
        return await self._request("DELETE", f"/v1/webhooks/{_q(id)}")

    async def test_webhook(self, id: str, event: str = "sync_end") -> dict[str, Any]:
        return await self._request("POST", f"/v1/webhooks/{_q(id)}/test", json={"event": event})
