"""API models of the onboarding endpoints (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.fivetran.secret_paths import mask_config
from app.input_guard import scrub
from app.onboarding.models import Connection, EndUser

#: Connection states (``app.onboarding.states.STATES``), for filters and the API document.
ConnectionState = Literal[
    "pending", "authorizing", "creating", "connected", "setup_failed", "broken", "paused", "deleted"
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    """An answer built from stored rows: text that cannot be encoded is replaced, so one bad
    row never fails a response or a list."""

    @model_validator(mode="before")
    @classmethod
    def _scrub(cls, data: Any) -> Any:
        return scrub(data)


# --- end-users ---------------------------------------------------------------------------


class DestinationIn(_In):
    """The end-user's own destination (instead of the configured template)."""

    service: str = Field(min_length=1, max_length=100, examples=["snowflake"])
    region: str | None = Field(None, max_length=100)
    time_zone_offset: str = Field("0", pattern=r"^(?:[+-]?(?:[0-9]|1[0-2]))$")
    config: dict[str, Any] = Field(default_factory=dict)


class EndUserPut(_In):
    name: str | None = Field(None, max_length=200)
    destination: DestinationIn | None = None


class OffboardingOut(BaseModel):
    state: str
    error: str | None = None


class EndUserOut(_Out):
    external_id: str
    name: str | None
    status: Literal["active", "offboarding", "deleted"]
    group_strategy: str
    fivetran_group_id: str | None
    destination: dict[str, Any] | None
    offboarding: OffboardingOut | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: EndUser) -> EndUserOut:
        status: Literal["active", "offboarding", "deleted"] = "active"
        if row.deleted_at is not None:
            status = "deleted"
        elif row.offboarding_state is not None:
            status = "offboarding"
        return cls(
            external_id=row.external_id,
            name=row.name,
            status=status,
            group_strategy=row.group_strategy,
            fivetran_group_id=row.fivetran_group_id,
            destination=row.destination,
            offboarding=OffboardingOut(state=row.offboarding_state, error=row.offboarding_error)
            if row.offboarding_state
            else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class EndUserPage(BaseModel):
    items: list[EndUserOut]
    next_cursor: str | None


class SshPublicKeyOut(BaseModel):
    public_key: str
    group_id: str


# --- sources -----------------------------------------------------------------------------


AuthMethod = Literal["oauth2", "credentials"]


class SourceOut(BaseModel):
    service: str
    name: str = Field(description="Display name.")
    auth_method: AuthMethod = Field(
        description="How this form authorizes: ``oauth2`` (connect session) or "
        "``credentials`` (POST /v1/connections). A service may be offered both ways."
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


# --- connections -------------------------------------------------------------------------


class ConnectionCreate(_In):
    end_user: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = Field(
        None,
        description='Secrets, in the same shape as config (e.g. {"pats": ["…"]}, '
        '{"secrets_list": [{"value": "…"}]}); write-only; also accepted inside config.',
    )


class ConnectionPatch(_In):
    paused: bool | None = None
    sync_frequency: int | None = None
    daily_sync_time: str | None = None
    config: dict[str, Any] | None = None


class SyncIn(_In):
    force: bool = False


class ResyncIn(_In):
    scope: dict[str, list[str]] | None = None


class TestIn(_In):
    trust_certificates: bool = False
    trust_fingerprints: bool = False


class FingerprintIn(_In):
    hash: str | None = Field(None, max_length=500)
    public_key: str | None = Field(None, max_length=5000)


class CertificateIn(_In):
    hash: str | None = Field(None, max_length=500)
    encoded_cert: str | None = Field(None, max_length=20000)


class ReauthorizeIn(_In):
    return_to: str = Field(max_length=2048)


class ConnectSessionOut(BaseModel):
    id: str
    connect_url: str
    expires_at: datetime
    status: str
    connection_id: str


class ColumnIn(_In):
    enabled: bool | None = None
    hashed: bool | None = None


class TableIn(_In):
    enabled: bool | None = None
    columns: dict[str, ColumnIn] | None = None


class SchemaIn(_In):
    enabled: bool | None = None
    tables: dict[str, TableIn] | None = None


class SchemaPatch(_In):
    schema_change_handling: Literal["ALLOW_ALL", "ALLOW_COLUMNS", "BLOCK_ALL"] | None = None
    schemas: dict[str, SchemaIn] | None = None


class RefusedItem(BaseModel):
    path: str
    reason: str


class SchemaOut(BaseModel):
    schema_change_handling: str | None
    schemas: dict[str, Any]
    policy: dict[str, Any]
    refused: list[RefusedItem] | None = None


class PreviewIn(_In):
    end_user: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = Field(
        None, description="Secrets in the config's shape (masked in the preview)."
    )
    auth_method: AuthMethod | None = Field(
        None, description="The way to preview for a service offered both ways."
    )


class PreviewOut(BaseModel):
    service: str
    body: dict[str, Any]


class ActionOut(BaseModel):
    connection_id: str
    status: str


class ConnectionOut(_Out):
    id: str
    end_user: str
    service: str
    auth_method: str
    state: str
    state_reason: str | None
    fivetran_connection_id: str | None
    group_id: str | None
    schema_: str = Field(alias="schema", serialization_alias="schema")
    setup_state: str | None
    sync_state: str | None
    setup_tests: list[dict[str, Any]] | None
    paused: bool
    sync_frequency: int | None
    daily_sync_time: str | None
    config: dict[str, Any]
    credentials_set: list[str] = Field(
        description="Paths of the stored secrets (``password``, ``pats[0]``, "
        "``secrets_list[1].value``); values never leave the vault."
    )
    last_sync_succeeded_at: datetime | None
    last_sync_failed_at: datetime | None
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def of(cls, conn: Connection, end_user_external_id: str) -> ConnectionOut:
        return cls(
            id=conn.id,
            end_user=end_user_external_id,
            service=conn.service,
            auth_method=conn.auth_method,
            state=conn.state,
            state_reason=conn.state_reason,
            fivetran_connection_id=conn.fivetran_connection_id,
            group_id=conn.group_id,
            schema_=conn.schema_name,
            setup_state=conn.setup_state,
            sync_state=conn.sync_state,
            setup_tests=conn.setup_tests,
            paused=conn.paused,
            sync_frequency=conn.sync_frequency,
            daily_sync_time=conn.daily_sync_time,
            config=mask_config(conn.service, dict(conn.config or {})),
            credentials_set=list(conn.secret_fields or []),
            last_sync_succeeded_at=conn.last_sync_succeeded_at,
            last_sync_failed_at=conn.last_sync_failed_at,
            created_at=conn.created_at,
            updated_at=conn.updated_at,
        )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ConnectionPage(BaseModel):
    items: list[ConnectionOut]
    next_cursor: str | None
