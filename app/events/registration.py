"""Registering our webhook endpoint at Fivetran (``pbf-headless fivetran webhooks ensure``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.events.kinds import FIVETRAN_WEBHOOK_EVENTS
from app.events.signing import webhook_secret
from app.fivetran.client import FivetranClient
from app.fivetran.errors import FivetranAmbiguous

WEBHOOK_PATH = "/v1/webhooks/fivetran"


def webhook_url(settings: Settings) -> str:
    return f"{settings.public_base_url}{WEBHOOK_PATH}"


@dataclass(frozen=True)
class EnsureResult:
    action: str  # "created" | "updated"
    webhook_id: str
    url: str
    events: list[str]
    scope: str  # "account" | "group <id>"
    duplicates: list[str]


def _matches(hook: dict[str, Any], url: str, group_id: str | None) -> bool:
    if hook.get("url") != url:
        return False
    if group_id is None:
        return hook.get("type") == "account"
    return hook.get("type") == "group" and hook.get("group_id") == group_id


async def ensure_webhook(
    client: FivetranClient, settings: Settings, *, group_id: str | None = None
) -> EnsureResult:
    """Create, or update in place, the account (or group) webhook pointing at us.

    Idempotent: an existing webhook with our URL (same account/group scope) is PATCHed with
    the events, ``active: true`` and the secret (Fivetran masks secrets, so it is always
    sent); otherwise one is created. Other webhooks with our URL in the same scope are
    reported as duplicates, not deleted.
    """
    secret = webhook_secret(settings)
    if secret is None:
        raise ValueError("PBF_FIVETRAN__WEBHOOK_SECRET is not set")
    url = webhook_url(settings)
    events = list(FIVETRAN_WEBHOOK_EVENTS)
    existing = [h for h in await client.list_webhooks() if _matches(h, url, group_id)]
    scope = "account" if group_id is None else f"group {group_id}"
    if existing:
        hook = existing[0]
        await client.update_webhook(
            hook["id"], {"url": url, "events": events, "active": True, "secret": secret}
        )
        return EnsureResult(
            "updated", hook["id"], url, events, scope, [h["id"] for h in existing[1:]]
        )

    try:
        if group_id is None:
            created = await client.create_account_webhook(url, events, secret, active=True)
        else:
            created = await client.create_group_webhook(group_id, url, events, secret, active=True)
    except FivetranAmbiguous:
        # The create may have happened: look it up instead of creating a second one.
        found = [h for h in await client.list_webhooks() if _matches(h, url, group_id)]
        if not found:
            raise
        created = found[0]
    return EnsureResult("created", created["id"], url, events, scope, [])
