"""connect sessions, oauth flows, oauth grants

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connect_sessions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("token_expires_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("token_consumed_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("caller_key_id", sa.String(length=40), nullable=True),
        sa.Column("end_user_id", sa.String(length=40), nullable=False),
        sa.Column("end_user_external_id", sa.String(length=200), nullable=False),
        sa.Column("end_user_name", sa.String(length=200), nullable=True),
        sa.Column("service", sa.String(length=100), nullable=False),
        sa.Column("provider_key", sa.String(length=100), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("reauthorization", sa.Boolean(), nullable=False),
        sa.Column("return_to", sa.String(length=2048), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("completed_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_connect_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_connect_sessions_end_user_id"), "connect_sessions", ["end_user_id"], unique=False
    )
    op.create_index(
        op.f("ix_connect_sessions_connection_id"),
        "connect_sessions",
        ["connection_id"],
        unique=False,
    )
    op.create_table(
        "oauth_flows",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("end_user_id", sa.String(length=40), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("provider_key", sa.String(length=100), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("iss_parameter_supported", sa.Boolean(), nullable=False),
        sa.Column("authorization_endpoint", sa.String(length=1000), nullable=False),
        sa.Column("token_endpoint", sa.String(length=1000), nullable=False),
        sa.Column("client_id", sa.String(length=500), nullable=False),
        sa.Column("redirect_uri", sa.String(length=1000), nullable=False),
        sa.Column("requested_scope", sa.String(length=2000), nullable=True),
        sa.Column("return_to", sa.String(length=2048), nullable=False),
        sa.Column("ua_binding_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("consumed_at", app.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["connect_sessions.id"],
            name=op.f("fk_oauth_flows_session_id_connect_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_flows")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_oauth_flows_state_hash")),
    )
    op.create_index(op.f("ix_oauth_flows_session_id"), "oauth_flows", ["session_id"], unique=False)
    op.create_table(
        "oauth_grants",
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("end_user_id", sa.String(length=40), nullable=False),
        sa.Column("provider_key", sa.String(length=100), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=True),
        sa.Column("client_id", sa.String(length=500), nullable=True),
        sa.Column("token_endpoint", sa.String(length=1000), nullable=True),
        sa.Column("granted_scope", sa.String(length=2000), nullable=True),
        sa.Column("has_refresh_token", sa.Boolean(), nullable=False),
        sa.Column("obtained_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("access_token_expires_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("needs_reauth", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_oauth_grants")),
    )
    op.create_index(
        op.f("ix_oauth_grants_end_user_id"), "oauth_grants", ["end_user_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_oauth_grants_end_user_id"), table_name="oauth_grants")
    op.drop_table("oauth_grants")
    op.drop_index(op.f("ix_oauth_flows_session_id"), table_name="oauth_flows")
    op.drop_table("oauth_flows")
    op.drop_index(op.f("ix_connect_sessions_connection_id"), table_name="connect_sessions")
    op.drop_index(op.f("ix_connect_sessions_end_user_id"), table_name="connect_sessions")
    op.drop_table("connect_sessions")
