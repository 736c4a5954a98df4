"""events: outbox, deliveries, delivery attempts, Fivetran webhook receipts, freshness

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SeqType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", SeqType, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("end_user_external_id", sa.String(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("fanned_out_at", app.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
        sa.UniqueConstraint("id", name=op.f("uq_events_id")),
    )
    op.create_index("ix_events_connection_id_seq", "events", ["connection_id", "seq"])
    op.create_index("ix_events_end_user_external_id_seq", "events", ["end_user_external_id", "seq"])
    op.create_index("ix_events_kind_seq", "events", ["kind", "seq"])
    op.create_index("ix_events_fanned_out_at_seq", "events", ["fanned_out_at", "seq"])

    op.create_table(
        "event_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("event_seq", SeqType, nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("ordering_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("round_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("leased_until", app.db.UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=80), nullable=True),
        sa.Column("last_attempt_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("delivered_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_seq"],
            ["events.seq"],
            name=op.f("fk_event_deliveries_event_seq_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_deliveries")),
        sa.UniqueConstraint("event_seq", "endpoint_id", name="uq_event_deliveries_event_endpoint"),
    )
    op.create_index(
        "ix_event_deliveries_status_next_attempt_at",
        "event_deliveries",
        ["status", "next_attempt_at"],
    )
    op.create_index(
        "ix_event_deliveries_endpoint_ordering",
        "event_deliveries",
        ["endpoint_id", "ordering_key", "status", "event_seq"],
    )

    op.create_table(
        "event_delivery_attempts",
        sa.Column("id", SeqType, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=80), nullable=False),
        sa.Column("started_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("finished_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["event_deliveries.id"],
            name=op.f("fk_event_delivery_attempts_delivery_id_event_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_delivery_attempts")),
        sa.UniqueConstraint("delivery_id", "attempt", name="uq_event_delivery_attempts_attempt"),
    )

    op.create_table(
        "fivetran_webhook_receipts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("fivetran_connection_id", sa.String(length=100), nullable=True),
        sa.Column("sync_id", sa.String(length=100), nullable=True),
        sa.Column("connection_id", sa.String(length=40), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("received_at", app.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fivetran_webhook_receipts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_fivetran_webhook_receipts_dedupe_key")),
    )

    op.create_table(
        "connection_freshness",
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("last_reconciled_at", app.db.UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("connection_id", name=op.f("pk_connection_freshness")),
    )
    op.create_index(
        op.f("ix_connection_freshness_last_reconciled_at"),
        "connection_freshness",
        ["last_reconciled_at"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_connection_freshness_last_reconciled_at"), table_name="connection_freshness"
    )
    op.drop_table("connection_freshness")
    op.drop_table("fivetran_webhook_receipts")
    op.drop_table("event_delivery_attempts")
    op.drop_index("ix_event_deliveries_endpoint_ordering", table_name="event_deliveries")
    op.drop_index("ix_event_deliveries_status_next_attempt_at", table_name="event_deliveries")
    op.drop_table("event_deliveries")
    op.drop_index("ix_events_fanned_out_at_seq", table_name="events")
    op.drop_index("ix_events_kind_seq", table_name="events")
    op.drop_index("ix_events_end_user_external_id_seq", table_name="events")
    op.drop_index("ix_events_connection_id_seq", table_name="events")
    op.drop_table("events")
