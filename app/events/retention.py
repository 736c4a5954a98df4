"""Retention: old, settled events and webhook receipts are deleted.

An event is settled when none of its deliveries is still ``pending`` (all delivered or dead,
or it never had an endpoint). Its deliveries and attempts go with it. Receipts older than the
window no longer need to dedupe anything (Fivetran retries for 24 h).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import (
    DELIVERY_PENDING,
    Event,
    EventDelivery,
    EventDeliveryAttempt,
    FivetranWebhookReceipt,
)


async def prune(
    session: AsyncSession, *, now: datetime, retention_days: int, batch: int = 1000
) -> tuple[int, int]:
    """Delete up to ``batch`` settled events and receipts older than the window."""
    if retention_days <= 0:
        return 0, 0
    cutoff = now - timedelta(days=retention_days)
    pending = exists().where(
        EventDelivery.event_seq == Event.seq, EventDelivery.status == DELIVERY_PENDING
    )
    seqs = list(
        (
            await session.scalars(
                select(Event.seq)
                .where(Event.created_at < cutoff, ~pending)
                .order_by(Event.seq)
                .limit(batch)
            )
        ).all()
    )
    if seqs:
        # Children first: correct even where foreign keys are not enforced.
        delivery_ids = select(EventDelivery.id).where(EventDelivery.event_seq.in_(seqs))
        await session.execute(
            delete(EventDeliveryAttempt).where(EventDeliveryAttempt.delivery_id.in_(delivery_ids))
        )
        await session.execute(delete(EventDelivery).where(EventDelivery.event_seq.in_(seqs)))
        await session.execute(delete(Event).where(Event.seq.in_(seqs)))
    receipt_ids = list(
        (
            await session.scalars(
                select(FivetranWebhookReceipt.id)
                .where(FivetranWebhookReceipt.received_at < cutoff)
                .limit(batch)
            )
        ).all()
    )
    if receipt_ids:
        await session.execute(
            delete(FivetranWebhookReceipt).where(FivetranWebhookReceipt.id.in_(receipt_ids))
        )
    return len(seqs), len(receipt_ids)
