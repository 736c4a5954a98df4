"""The inbound Fivetran webhook route: it updates connection state (documented with events)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from app.connections.webhooks import receive_fivetran_webhook
from app.dependencies import SessionDep, SettingsDep, StateDep
from app.events.schemas import WebhookAck

router = APIRouter(tags=["events"])

_PROBLEM: dict[str, Any] = {"content": {"application/problem+json": {}}}


@router.post(
    "/v1/webhooks/fivetran",
    response_model=WebhookAck,
    responses={400: _PROBLEM, 401: _PROBLEM},
)
async def fivetran_webhook(
    request: Request,
    state: StateDep,
    session: SessionDep,
    settings: SettingsDep,
    x_fivetran_signature_256: Annotated[str | None, Header(include_in_schema=True)] = None,
) -> dict[str, Any]:
    """Fivetran's webhook target. No API key: authenticated by ``X-Fivetran-Signature-256``
    (hex HMAC-SHA256 of the raw body with the webhook secret). Duplicates are acknowledged
    without effect; webhooks for unknown connections are acknowledged and logged."""
    body = await request.body()
    return await receive_fivetran_webhook(
        session,
        state,
        settings=settings,
        body=body,
        signature=x_fivetran_signature_256,
    )
