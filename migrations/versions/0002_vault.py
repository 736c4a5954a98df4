"""vault: encrypted secrets (envelope AES-256-GCM)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vault_secrets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("end_user_id", sa.String(length=64), nullable=False),
        sa.Column("owner_type", sa.String(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=200), nullable=False),
        sa.Column("alg", sa.String(length=32), nullable=False),
        sa.Column("kek_provider", sa.String(length=16), nullable=False),
        sa.Column("kek_id", sa.String(length=300), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_secrets")),
        sa.UniqueConstraint(
            "owner_type", "owner_id", "field", name=op.f("uq_vault_secrets_owner_type")
        ),
    )
    op.create_index("ix_vault_secrets_end_user_id", "vault_secrets", ["end_user_id"])
    op.create_index("ix_vault_secrets_kek_id", "vault_secrets", ["kek_id"])


def downgrade() -> None:
    op.drop_index("ix_vault_secrets_kek_id", table_name="vault_secrets")
    op.drop_index("ix_vault_secrets_end_user_id", table_name="vault_secrets")
    op.drop_table("vault_secrets")
