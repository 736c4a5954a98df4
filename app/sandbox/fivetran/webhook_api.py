"""The webhook management API of the Fivetran API simulator (a **simulation**).

Account and group webhooks; URLs must be HTTPS, except ``http://`` loopback in the sandbox.
Signing and delivery: :mod:`app.sandbox.fivetran.webhooks`.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.sandbox.fivetran.simulator import (
    Handler,
    Simulator,
    invalid,
    not_found,
    ok,
    routes_router,
    simulator_of,
)
from app.sandbox.fivetran.state import new_word_id, now_iso
from app.sandbox.fivetran.webhooks import WEBHOOK_EVENTS, event_payload

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _check_url(url: Any) -> None:
    if not isinstance(url, str) or not url:
        raise invalid("Field 'url' is required")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return
    raise invalid("Invalid field 'url': must be an HTTPS URL")


def _check_events(events: Any) -> None:
    if not isinstance(events, list) or not events:
        raise invalid("Field 'events' is required")
    for event in events:
        if event not in WEBHOOK_EVENTS:
            raise invalid(f"Invalid field 'events': unknown event '{event}'")


def _hook_view(sim: Simulator, hook: dict[str, Any]) -> dict[str, Any]:
    out = dict(hook)
    out["secret"] = "******" if sim.state.webhook_secrets.get(hook["id"]) else None
    return out


async def _create_webhook(request: Request, group_id: str | None) -> Response:
    sim = simulator_of(request)
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    _check_url(body.get("url"))
    _check_events(body.get("events"))
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise invalid("Invalid field 'active': must be a boolean")
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        raise invalid("Invalid field 'secret': must be a string")
    wid = new_word_id(sim.state.webhooks)
    hook: dict[str, Any] = {
        "id": wid,
        "type": "group" if group_id else "account",
        "url": body["url"],
        "events": list(body["events"]),
        "active": active,
        "created_at": now_iso(),
        "created_by": "sandbox_user",
    }
    if group_id:
        hook["group_id"] = group_id
    sim.state.webhooks[wid] = hook
    sim.state.webhook_secrets[wid] = secret
    return ok(_hook_view(sim, hook), "Webhook has been created")


async def create_account_webhook(request: Request) -> Response:
    return await _create_webhook(request, None)


async def create_group_webhook(request: Request) -> Response:
    sim = simulator_of(request)
    gid = request.path_params["group_id"]
    sim.group(gid)
    return await _create_webhook(request, gid)


def find_hook(sim: Simulator, wid: str) -> dict[str, Any]:
    hook = sim.state.webhooks.get(wid)
    if hook is None:
        raise not_found("Webhook", wid)
    return hook


async def list_webhooks(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(sim.page(request, [_hook_view(sim, h) for h in sim.state.webhooks.values()]))


async def get_webhook(request: Request) -> Response:
    sim = simulator_of(request)
    return ok(_hook_view(sim, find_hook(sim, request.path_params["webhook_id"])))


async def patch_webhook(request: Request) -> Response:
    sim = simulator_of(request)
    hook = find_hook(sim, request.path_params["webhook_id"])
    body = await sim.body(request)
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    for key in body:
        if key not in ("url", "events", "active", "secret"):
            raise invalid(f"Invalid field '{key}': unknown field")
    if "url" in body:
        _check_url(body["url"])
        hook["url"] = body["url"]
    if "events" in body:
        _check_events(body["events"])
        hook["events"] = list(body["events"])
    if "active" in body:
        if not isinstance(body["active"], bool):
            raise invalid("Invalid field 'active': must be a boolean")
        hook["active"] = body["active"]
    if "secret" in body:
        sim.state.webhook_secrets[hook["id"]] = body["secret"]
    return ok(_hook_view(sim, hook), "Webhook has been updated")


async def delete_webhook(request: Request) -> Response:
    sim = simulator_of(request)
    wid = request.path_params["webhook_id"]
    find_hook(sim, wid)
    del sim.state.webhooks[wid]
    sim.state.webhook_secrets.pop(wid, None)
    return ok(message=f"Webhook with id '{wid}' has been deleted")


async def test_webhook(request: Request) -> Response:
    sim = simulator_of(request)
    hook = find_hook(sim, request.path_params["webhook_id"])
    body = await sim.body(request)
    event = body.get("event") if isinstance(body, dict) else None
    if event not in WEBHOOK_EVENTS:
        raise invalid("Field 'event' is required and must be a webhook event")
    dummy = {
        "id": "_connection_1",
        "service": "_service_1",
        "schema": "_schema_1",
        "group_id": hook.get("group_id") or "_group_1",
    }
    data = {"status": "SUCCESSFUL"} if event == "sync_end" else {}
    result = await sim.webhooks.deliver(hook["id"], event_payload(event, dummy, data))
    return ok(result, "Webhook has been tested")


@cache
def router() -> APIRouter:
    """``/v1/webhooks…`` routes (built once per process; the handlers find their simulator
    with :func:`simulator_of`)."""
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/v1/webhooks/account", create_account_webhook),
        ("POST", "/v1/webhooks/group/{group_id}", create_group_webhook),
        ("GET", "/v1/webhooks", list_webhooks),
        ("GET", "/v1/webhooks/{webhook_id}", get_webhook),
        ("PATCH", "/v1/webhooks/{webhook_id}", patch_webhook),
        ("DELETE", "/v1/webhooks/{webhook_id}", delete_webhook),
        ("POST", "/v1/webhooks/{webhook_id}/test", test_webhook),
    ]
    return routes_router(routes)
