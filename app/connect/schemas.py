"""API models of connect sessions (contract, ARCHITECTURE §3). No token ever appears here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.kit.schemas import StrictIn

SessionStatus = Literal["pending", "completed", "failed", "expired"]


class ConnectSessionCreate(BaseModel):
    """Start onboarding one OAuth source for an end-user."""

    model_config = ConfigDict(extra="forbid")

    end_user: str = Field(min_length=1, max_length=200, description="The end-user's external id.")
    service: str = Field(
        min_length=1, max_length=100, description="Fivetran service, e.g. `salesforce`."
    )
    return_to: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the browser goes back after consent: an https URL on an allow-listed "
        "origin (PBF_API__ALLOWED_ORIGINS; claimed app links too), or an allow-listed native-app "
        "redirect such as com.example.app:/connected (PBF_API__ALLOWED_APP_REDIRECTS).",
    )
    config: dict[str, Any] | None = Field(
        None,
        description="End-user inputs (e.g. `shop`, `subdomain`) and connection config.",
    )
    connection_id: str | None = Field(
        None, max_length=40, description="Re-authorize this existing connection."
    )


class ConnectSessionCreated(BaseModel):
    id: str
    connect_url: str = Field(
        description="Send the end-user's browser here (single use, short-lived)."
    )
    expires_at: datetime = Field(description="The connect_url must be opened before this.")
    status: SessionStatus


class ConnectSessionView(BaseModel):
    id: str
    end_user: str
    service: str
    status: SessionStatus
    connection_id: str | None = Field(
        None, description="The connection this session creates or re-authorizes."
    )
    error: str | None = Field(None, description="Allow-listed error code when failed.")
    existing_connection_id: str | None = Field(
        None,
        description="The end-user's connection that already holds the consented account "
        "(error account_already_connected), or the one returned instead of a new connection "
        "(PBF_CONNECT__DUPLICATE_ACCOUNT=return_existing).",
    )
    reauthorization: bool
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None = None


# --- re-authorization of an existing connection (POST /v1/connections/{id}/reauthorize) ---


class ReauthorizeIn(StrictIn):
    return_to: str = Field(max_length=2048)


class ConnectSessionOut(BaseModel):
    id: str
    connect_url: str
    expires_at: datetime
    status: str
    connection_id: str


class ConnectCardIn(StrictIn):
    """Hand the end-user Fivetran's Connect Card for a ``connect_card`` connection."""

    return_to: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the browser goes back after the card: an https URL on an "
        "allow-listed origin (PBF_API__ALLOWED_ORIGINS), or an allow-listed native-app redirect.",
    )
    hide_setup_guide: bool | None = Field(
        None, description="Hide Fivetran's embedded setup guide in the card."
    )


class ConnectCardOut(BaseModel):
    connection_id: str
    connect_card_url: str = Field(
        description="Fivetran's Connect Card: send the end-user's browser there. After the "
        "setup it comes back to return_to with status (connected | error), connection_id "
        "and an error code."
    )
    expires_at: datetime = Field(
        description="Until when the card's return to this service is accepted (single use)."
    )


# --- post-consent configuration (account pickers) ------------------------------------------


class PickerOption(BaseModel):
    value: str = Field(description="What goes into the Fivetran config field.")
    label: str = Field(description="What the end-user sees (the provider's name for it).")


class PickerFieldOut(BaseModel):
    name: str = Field(description="The Fivetran config field (`accounts`, `site_urls` …).")
    title: str
    multiple: bool = Field(description="A list field: one or more values; else exactly one.")


class ConnectionOptions(BaseModel):
    """The choices of a connection's post-consent configuration, fetched from the provider."""

    connection_id: str
    state: str
    fields: list[PickerFieldOut]
    options: dict[str, list[PickerOption]] = Field(
        description="`{field: [{value, label}]}`, fetched from the provider with the "
        "connection's access token."
    )
    selected: dict[str, Any] = Field(
        description="The current choice of each field (empty before the first configure)."
    )


class ConfigureIn(StrictIn):
    """The end-user's choice: `{field: value}` (a list for `multiple` fields)."""

    config: dict[str, Any] = Field(
        description='Every picker field of the source, e.g. `{"accounts": ["1234567890"]}`.'
    )
