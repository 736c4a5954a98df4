"""onboarding: end-users, service groups, connections, transitions, idempotency keys

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "end_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("group_strategy", sa.String(length=20), nullable=False),
        sa.Column("fivetran_group_id", sa.String(length=100), nullable=True),
        sa.Column("owns_group", sa.Boolean(), nullable=False),
        sa.Column("destination", sa.JSON(), nullable=True),
        sa.Column("offboarding_state", sa.String(length=20), nullable=True),
        sa.Column("offboarding_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_end_users")),
        sa.UniqueConstraint("external_id", name=op.f("uq_end_users_external_id")),
    )
    op.create_table(
        "service_groups",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("fivetran_group_id", sa.String(length=100), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_service_groups")),
    )
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("end_user_id", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("auth_method", sa.String(length=20), nullable=False),
        sa.Column("provider_key", sa.String(length=100), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("state_reason", sa.String(length=200), nullable=True),
        sa.Column("group_id", sa.String(length=100), nullable=True),
        sa.Column("schema_name", sa.String(length=200), nullable=False),
        sa.Column("fivetran_connection_id", sa.String(length=100), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("secret_fields", sa.JSON(), nullable=False),
        sa.Column("oauth_metadata", sa.JSON(), nullable=False),
        sa.Column("setup_state", sa.String(length=20), nullable=True),
        sa.Column("sync_state", sa.String(length=20), nullable=True),
        sa.Column("setup_tests", sa.JSON(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("sync_frequency", sa.Integer(), nullable=True),
        sa.Column("daily_sync_time", sa.String(length=5), nullable=True),
        sa.Column("grant_handed_off_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_sync_succeeded_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_sync_failed_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("deleted_at", app.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["end_user_id"],
            ["end_users.id"],
            name=op.f("fk_connections_end_user_id_end_users"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
        sa.UniqueConstraint(
            "end_user_id", "service", "slot", name=op.f("uq_connections_end_user_id")
        ),
        sa.UniqueConstraint(
            "fivetran_connection_id", name=op.f("uq_connections_fivetran_connection_id")
        ),
    )
    op.create_index(
        op.f("ix_connections_end_user_id"), "connections", ["end_user_id"], unique=False
    )
    op.create_index(op.f("ix_connections_state"), "connections", ["state"], unique=False)
    op.create_table(
        "connection_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("from_state", sa.String(length=20), nullable=True),
        sa.Column("to_state", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_connection_transitions_connection_id_connections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connection_transitions")),
    )
    op.create_index(
        op.f("ix_connection_transitions_connection_id"),
        "connection_transitions",
        ["connection_id"],
        unique=False,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("caller_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=100), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        sa.UniqueConstraint(
            "caller_id", "scope", "key_hash", name=op.f("uq_idempotency_keys_caller_id")
        ),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index(
        op.f("ix_connection_transitions_connection_id"), table_name="connection_transitions"
    )
    op.drop_table("connection_transitions")
    op.drop_index(op.f("ix_connections_state"), table_name="connections")
    op.drop_index(op.f("ix_connections_end_user_id"), table_name="connections")
    op.drop_table("connections")
    op.drop_table("service_groups")
    op.drop_table("end_users")
