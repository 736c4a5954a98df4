"""identity: the provider-side account of a connection (account id, label, duplicate_of)
and the connection a connect session found already holding that account

Revision ID: 0010_identity
Revises: 0009_connect_card
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_identity"
down_revision: str | Sequence[str] | None = "0009_connect_card"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("account_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("account_label", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("duplicate_of", sa.String(length=40), nullable=True))
        batch.create_index(
            "ix_connections_account", ["end_user_id", "service", "account_id"], unique=False
        )
    with op.batch_alter_table("connect_sessions") as batch:
        batch.add_column(sa.Column("existing_connection_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("connect_sessions") as batch:
        batch.drop_column("existing_connection_id")
    with op.batch_alter_table("connections") as batch:
        batch.drop_index("ix_connections_account")
        batch.drop_column("duplicate_of")
        batch.drop_column("account_label")
        batch.drop_column("account_id")
