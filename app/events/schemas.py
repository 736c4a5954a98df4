"""API models of the events domain (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

EventStatus = Literal["pending", "delivered", "dead", "skipped"]


class DeliveryOut(BaseModel):
    """Delivery of an event to one endpoint."""

    endpoint_id: str
    status: Literal["pending", "delivered", "dead"]
    attempts: int = Field(description="Attempts made so far (all rounds).")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is retried.")
    last_attempt_at: datetime | None
    last_status_code: int | None = Field(description="HTTP status of the last attempt.")
    last_error: str | None = Field(description="e.g. http_503, timeout, transport_error:…")
    delivered_at: datetime | None


class EventOut(BaseModel):
    """One outbound event and its delivery state. ``data`` holds ids and states only."""

    id: str
    type: str
    created_at: datetime
    connection_id: str | None
    end_user: str | None
    data: dict[str, Any]
    status: EventStatus = Field(
        description="pending (not yet delivered everywhere), delivered, dead (an endpoint gave "
        "up), skipped (no endpoint subscribes to this type)."
    )
    deliveries: list[DeliveryOut]


class EventList(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class RedeliverRequest(BaseModel):
    endpoint_id: str | None = Field(
        None, description="Only this endpoint (default: every endpoint subscribed to the type)."
    )


class EventEndpointOut(BaseModel):
    """A configured endpoint. Its secrets are never returned."""

    id: str
    url: str
    events: list[str] | None = Field(description="Subscribed types (null: every type).")
    secrets_configured: int = Field(description="1, or 2 during a secret rotation.")
    pending: int = Field(description="Deliveries waiting (including retries).")
    dead: int = Field(description="Deliveries that gave up.")


class EventEndpointList(BaseModel):
    items: list[EventEndpointOut]


class WebhookAck(BaseModel):
    status: Literal["accepted", "duplicate"]
    outcome: str
