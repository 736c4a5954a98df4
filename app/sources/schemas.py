"""API models of the sources endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# --- sources -----------------------------------------------------------------------------


AuthMethod = Literal["oauth2", "oauth1", "credentials", "connect_card"]


class SourceOut(BaseModel):
    service: str
    name: str = Field(description="Display name.")
    auth_method: AuthMethod = Field(
        description="How this form authorizes: ``oauth2`` (connect session, OAuth 2.0), "
        "``oauth1`` (connect session, OAuth 1.0a: the same browser flow, X / Twitter), "
        "``credentials`` (POST /v1/connections) or ``connect_card`` (POST /v1/connections, "
        "then POST /v1/connections/{id}/connect-card: Fivetran's Connect Card). A service "
        "may be offered more than one way; each is its own item."
    )
    reason: str | None = Field(
        None,
        description="Why the service is offered through Fivetran's Connect Card "
        "(connect_card items only).",
    )
    category: str = Field(description="Catalog category (database, warehouse, file, …).")
    icon_url: str | None = None
    required_source: Literal["curated", "derived"] = Field(
        description="Where the form's required fields come from: curated from Fivetran's "
        "setup guides, or derived by rules."
    )
    config_schema: dict[str, Any] = Field(
        description="JSON Schema of the form: titles, descriptions, defaults, labelled enums "
        "(oneOf const/title), x-order, x-groups, conditional requirements (allOf if/then) and "
        "x-show-if on conditional fields."
    )
    scopes: list[str] | None = None
    verified: bool | None = Field(
        None,
        description="Whether every provider fact behind this source rests on cited sources "
        "(not set for plain credential sources). Never means tested against the live provider.",
    )
    unverified_facts: list[str] | None = Field(
        None, description="The provider facts that rest on general knowledge only."
    )
    facts_confidence: str | None = Field(
        None, description="Where the endpoint facts come from: nango, airbyte, docs, inferred."
    )


class SourceList(BaseModel):
    items: list[SourceOut]
    next_cursor: str | None = None
