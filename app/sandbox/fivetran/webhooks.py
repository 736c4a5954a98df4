"""Signed webhook delivery of the Fivetran simulator (simulation of Fivetran's webhooks).

Payload shape as Fivetran sends it::

    {"event": "sync_end", "created": "2026-05-22T00:06:08.638Z", "connector_type": "postgres",
     "connector_id": "amber_acorn", "connector_name": "pg_acme", "sync_id": "…",
     "destination_group_id": "calm_delta", "data": {"status": "SUCCESSFUL"}}

Header ``X-Fivetran-Signature-256`` = uppercase hex HMAC-SHA256 of the raw body keyed with the
webhook's secret (absent when the webhook has no secret). Deliveries go through the shared http
client (in-process in sandbox mode) as background tasks; failures are logged and recorded in
the delivery log, never raised. ``drain()`` waits for the pending ones (tests, control API).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from app.sandbox.fivetran.state import SimState, now_iso

log = logging.getLogger("pbf.sandbox.fivetran.webhooks")

WEBHOOK_EVENTS = frozenset(
    {
        "sync_start",
        "sync_end",
        "status",
        "dbt_run_start",
        "dbt_run_succeeded",
        "dbt_run_failed",
        "transformation_run_start",
        "transformation_run_succeeded",
        "transformation_run_failed",
        "transformation_start",
        "transformation_succeeded",
        "transformation_failed",
        "connection_successful",
        "connection_failure",
        "create_connector",
        "pause_connector",
        "resume_connector",
        "edit_connector",
        "delete_connector",
        "force_update_connector",
        "resync_connector",
        "resync_table",
    }
)


def sign(secret: str, body: bytes) -> str:
    """Uppercase hex HMAC-SHA256 of ``body`` (Fivetran's ``X-Fivetran-Signature-256``)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().upper()


def event_payload(
    event: str,
    connection: dict[str, Any],
    data: dict[str, Any] | None = None,
    sync_id: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "event": event,
        "created": now_iso(),
        "connector_type": connection["service"],
        "connector_id": connection["id"],
        "connector_name": connection["schema"],
        "destination_group_id": connection["group_id"],
        "data": data or {},
    }
    if sync_id is not None:
        payload["sync_id"] = sync_id
    return payload


class WebhookDispatcher:
    """Finds the subscribed webhooks of an event and delivers it to each."""

    def __init__(self, state: SimState, get_http: Callable[[], httpx.AsyncClient]) -> None:
        self.state = state
        self._get_http = get_http
        self._pending: set[asyncio.Future[Any]] = set()

    def emit(
        self,
        event: str,
        connection: dict[str, Any],
        data: dict[str, Any] | None = None,
        *,
        sync_id: str | None = None,
    ) -> None:
        """Queue ``event`` for every active webhook (account or the connection's group)."""
        payload = event_payload(event, connection, data, sync_id)
        for hook in list(self.state.webhooks.values()):
            if not hook["active"] or event not in hook["events"]:
                continue
            if hook["type"] == "group" and hook.get("group_id") != connection["group_id"]:
                continue
            task = asyncio.ensure_future(self.deliver(hook["id"], payload))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def deliver(self, webhook_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one event now; returns ``{succeed, status, message}`` (never raises)."""
        hook = self.state.webhooks.get(webhook_id)
        if hook is None:
            return {"succeed": False, "status": 0, "message": "webhook deleted"}
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Fivetran-Sandbox-Webhook"}
        secret = self.state.webhook_secrets.get(webhook_id)
        if secret:
            headers["X-Fivetran-Signature-256"] = sign(secret, body)
        record: dict[str, Any] = {
            "webhook_id": webhook_id,
            "event": payload["event"],
            "connector_id": payload.get("connector_id"),
            "url": hook["url"],
            "at": now_iso(),
        }
        try:
            response = await self._get_http().post(
                hook["url"],
                content=body,
                headers=headers,
                timeout=10.0,
                extensions={"pbf_target": "sandbox:fivetran-webhook"},
            )
            record["status"] = response.status_code
            ok = 200 <= response.status_code < 300
            result = {
                "succeed": ok,
                "status": response.status_code,
                "message": "Success" if ok else f"Webhook target answered {response.status_code}",
            }
        except Exception as exc:  # delivery failures are logged, not raised
            record["status"] = 0
            record["error"] = type(exc).__name__
            result = {
                "succeed": False,
                "status": 0,
                "message": f"Delivery failed: {type(exc).__name__}",
            }
        if not result["succeed"]:
            log.warning(
                "sandbox fivetran webhook %s (%s) delivery failed: %s",
                webhook_id,
                payload["event"],
                result["message"],
            )
        self.state.deliveries.append(record)
        return result

    async def drain(self) -> None:
        """Wait until every queued delivery has finished."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
