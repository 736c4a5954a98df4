"""API models of the connection endpoints (separate from the ORM models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.connections.models import Connection
from app.fivetran.secret_paths import mask_config
from app.kit.schemas import ScrubbedOut, StrictIn
from app.sources.schemas import AuthMethod

#: Connection states (``app.connections.states.STATES``), for filters and the API document.
ConnectionState = Literal[
    "pending",
    "authorizing",
    "needs_configuration",
    "creating",
    "connected",
    "setup_failed",
    "broken",
    "paused",
    "deleted",
]


# --- connections -------------------------------------------------------------------------


class ConnectionCreate(StrictIn):
    end_user: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=100)
    config: dict[str, Any] = Field(default_factory=dict)
    credentials: dict[str, Any] | None = Field(
        None,
        description='Secrets, in the same shape as config (e.g. {"pats": ["…"]}, '
        '{"secrets_list": [{"value": "…"}]}); write-only; also accepted inside config.',
    )
    auth_method: Literal["credentials", "connect_card"] | None = Field(
        None,
        description="The way to create a service offered more than one way (GET /v1/sources): "
        "credentials (tested now) or connect_card (created without auth, state "
        "authorizing; then POST /v1/connections/{id}/connect-card). Default: credentials "
        "where offered, else the Connect Card.",
    )


class ConnectionPatch(StrictIn):
    paused: bool | None = None
    sync_frequency: int | None = None
    daily_sync_time: str | None = None
    config: dict[str, Any] | None = None


class SyncIn(StrictIn):
    force: bool = False


class ResyncIn(StrictIn):
    scope: dict[str, list[str]] | None = None


class TestIn(StrictIn):
    trust_certificates: bool = False
    trust_fingerprints: bool = False


class FingerprintIn(StrictIn):
    hash: str | None = Field(None, max_length=500)
    public_key: str | None = Field(None, max_length=5000)


class CertificateIn(StrictIn):
    hash: str | None = Field(None, max_length=500)
    encoded_cert: str | None = Field(None, max_length=20000)


class ColumnIn(StrictIn):
    enabled: bool | None = None
    hashed: bool | None = None


class TableIn(StrictIn):
    enabled: bool | None = None
    columns: dict[str, ColumnIn] | None = None


class SchemaIn(StrictIn):
    enabled: bool | None = None
    tables: dict[str, TableIn] | None = None


class SchemaPatch(StrictIn):
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


class PreviewIn(StrictIn):
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


class AccountOut(BaseModel):
    """The provider-side account an OAuth connection is authorized as."""

    id: str = Field(
        description="Stable provider-side id (Salesforce org id, HubSpot portal "
        "id, Google account sub, …)."
    )
    label: str | None = Field(
        None, description="Display label (org URL, portal domain, e-mail …); personal data."
    )


class ConnectionOut(ScrubbedOut):
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
    account: AccountOut | None = Field(
        None,
        description="The provider account this OAuth connection is authorized as; null for "
        "credential sources, providers without an identity source, and connections not "
        "authorized yet.",
    )
    duplicate_of: str | None = Field(
        None,
        description="Another connection of the same end-user and service on the same "
        "account (set under PBF_CONNECT__DUPLICATE_ACCOUNT=flag).",
    )

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
            account=AccountOut(id=conn.account_id, label=conn.account_label)
            if conn.account_id
            else None,
            duplicate_of=conn.duplicate_of,
        )

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ConnectionPage(BaseModel):
    items: list[ConnectionOut]
    next_cursor: str | None
