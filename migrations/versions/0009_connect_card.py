"""connect card: links to Fivetran's Connect Card and their single-use return tokens

Revision ID: 0009_connect_card
Revises: 0008_audit
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0009_connect_card"
down_revision: str | Sequence[str] | None = "0008_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connect_card_links",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("end_user_id", sa.String(length=40), nullable=False),
        sa.Column("caller_key_id", sa.String(length=40), nullable=True),
        sa.Column("return_to", sa.String(length=2048), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("consumed_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_card_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_connect_card_links_token_hash")),
    )
    op.create_index(
        op.f("ix_connect_card_links_connection_id"),
        "connect_card_links",
        ["connection_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_connect_card_links_connection_id"), table_name="connect_card_links")
    op.drop_table("connect_card_links")
