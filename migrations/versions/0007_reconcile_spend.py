"""events: reconcile_spend (Fivetran requests spent by reconciliation, per connection pass)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reconcile_spend",
        sa.Column("id", SeqType, autoincrement=True, nullable=False),
        sa.Column("spent_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_spend")),
    )
    op.create_index(op.f("ix_reconcile_spend_spent_at"), "reconcile_spend", ["spent_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_reconcile_spend_spent_at"), table_name="reconcile_spend")
    op.drop_table("reconcile_spend")
