"""Key rotation: counts per key, and the batched, resumable re-wrap of data keys.

Rotation without downtime:

1. add a new key to the keyring and make it ``active``; roll the service out — new writes
   use the new key, reads work under every configured key. With several replicas, do it in
   two roll-outs (``keys rotate --no-activate``, roll out; ``keys activate KID``, roll out)
   so that no replica still on the old keyring meets a row under a key it lacks;
2. ``pbf-headless keys rewrap`` re-wraps every data key still under another key, in short
   batches (one read transaction, crypto outside any transaction, one write transaction per
   batch). Each row is a compare-and-swap ``UPDATE … WHERE id=:id AND kek_provider=:p AND
   kek_id=:old AND wrapped_dek=:blob``, so a row rewritten meanwhile (a fresh secret, or
   another rewrap) is left alone, and a rerun simply continues. The data ciphertext and
   nonce are never touched; no plaintext is produced, only data keys in memory;
3. ``pbf-headless keys status`` shows 0 rows under the old key: remove it from the keyring
   (``keys remove OLD`` for a key file refuses while any row still uses it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, not_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.vault.envelope import OwnerContext, SealedSecret
from app.vault.errors import VaultError
from app.vault.models import VaultSecret
from app.vault.service import KeyRef, Vault

log = logging.getLogger("pbf.vault")


@dataclass(frozen=True, slots=True)
class KeyCount:
    provider: str
    kek_id: str
    rows: int
    active: bool
    configured: bool


@dataclass(slots=True)
class RewrapFailure:
    secret_id: str
    provider: str
    kek_id: str
    reason: str


@dataclass(slots=True)
class RewrapReport:
    total: int = 0
    rewrapped: int = 0
    skipped: int = 0  # changed concurrently (already current): nothing to do
    failures: list[RewrapFailure] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.rewrapped + self.skipped + len(self.failures)


async def key_counts(session: AsyncSession, vault: Vault) -> list[KeyCount]:
    """Rows per (provider, key id), plus configured keys that hold no rows."""
    rows = (
        await session.execute(
            select(VaultSecret.kek_provider, VaultSecret.kek_id, func.count())
            .group_by(VaultSecret.kek_provider, VaultSecret.kek_id)
            .order_by(VaultSecret.kek_provider, VaultSecret.kek_id)
        )
    ).all()
    counts = {KeyRef(p, k): int(n) for p, k, n in rows}
    for name, provider in vault.providers.items():
        for kid in provider.key_ids():
            counts.setdefault(KeyRef(name, kid), 0)
    active = vault.active
    return sorted(
        (
            KeyCount(ref.provider, ref.kek_id, n, ref == active, vault.is_configured(ref))
            for ref, n in counts.items()
        ),
        key=lambda c: (not c.active, c.provider, c.kek_id),
    )


def _not_current(vault: Vault, from_key: str | None):  # type: ignore[no-untyped-def]
    active = vault.active
    cond = not_(
        and_(VaultSecret.kek_provider == active.provider, VaultSecret.kek_id == active.kek_id)
    )
    if from_key is not None:
        cond = and_(cond, VaultSecret.kek_id == from_key)
    return cond


async def count_stale(session: AsyncSession, vault: Vault, from_key: str | None = None) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).select_from(VaultSecret).where(_not_current(vault, from_key))
            )
        ).scalar_one()
    )


async def rewrap(
    maker: async_sessionmaker[AsyncSession],
    vault: Vault,
    *,
    batch_size: int = 200,
    from_key: str | None = None,
    progress: Callable[[RewrapReport], None] | None = None,
) -> RewrapReport:
    """Re-wrap every data key not under the active key (optionally only those under
    ``from_key``). Rows that fail (unknown key, failed authentication) are reported and
    skipped; the rest continue. Safe to run while the service serves and to run again."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    report = RewrapReport()
    async with maker() as session:
        report.total = await count_stale(session, vault, from_key)
    if progress:
        progress(report)
    cursor = ""
    while True:
        async with maker() as session:
            rows = (
                await session.execute(
                    select(
                        VaultSecret.id,
                        VaultSecret.end_user_id,
                        VaultSecret.owner_type,
                        VaultSecret.owner_id,
                        VaultSecret.field,
                        VaultSecret.alg,
                        VaultSecret.kek_provider,
                        VaultSecret.kek_id,
                        VaultSecret.wrapped_dek,
                    )
                    .where(_not_current(vault, from_key), VaultSecret.id > cursor)
                    .order_by(VaultSecret.id)
                    .limit(batch_size)
                )
            ).all()
        if not rows:
            break
        cursor = rows[-1].id
        updates: list[tuple[str, str, str, bytes, SealedSecret]] = []
        for r in rows:
            ctx = OwnerContext(r.end_user_id, r.owner_type, r.owner_id, r.field)
            old = SealedSecret(r.alg, r.kek_provider, r.kek_id, r.wrapped_dek, b"", b"")
            try:
                new = await vault.rewrap_sealed(old, ctx)
            except VaultError as exc:
                report.failures.append(RewrapFailure(r.id, r.kek_provider, r.kek_id, exc.detail))
                log.warning(
                    "vault rewrap failed for a row",
                    extra={"secret_id": r.id, "kek_id": r.kek_id, "error_code": exc.code},
                )
                continue
            updates.append((r.id, r.kek_provider, r.kek_id, r.wrapped_dek, new))
        async with maker() as session, session.begin():
            for secret_id, old_provider, old_kid, old_blob, new in updates:
                result = await session.execute(
                    update(VaultSecret)
                    .where(
                        VaultSecret.id == secret_id,
                        VaultSecret.kek_provider == old_provider,
                        VaultSecret.kek_id == old_kid,
                        VaultSecret.wrapped_dek == old_blob,
                    )
                    .values(
                        kek_provider=new.kek_provider,
                        kek_id=new.kek_id,
                        wrapped_dek=new.wrapped_dek,
                    )
                    .execution_options(synchronize_session=False)
                )
                if getattr(result, "rowcount", 0) == 1:
                    report.rewrapped += 1
                else:
                    report.skipped += 1
        if progress:
            progress(report)
    log.info(
        "vault rewrap finished",
        extra={
            "rewrapped": report.rewrapped,
            "skipped": report.skipped,
            "failed": len(report.failures),
            "active_key_id": vault.active.kek_id,
        },
    )
    return report
