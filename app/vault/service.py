"""The vault: ``put``/``get``/``delete``/``shred_end_user`` on ``vault_secrets``.

Every write draws a fresh data key (DEK), encrypts the value with it (AES-256-GCM, owner ids
as associated data) and stores the DEK wrapped by the active key provider. Reads use the
owner ids the *caller* names, so a ciphertext copied into another row never decrypts.
Services pass their session; the vault only flushes, the request's transaction commits.

Crypto-shredding: the data key exists only wrapped, inside the row; deleting the row deletes
it (on SQLite with ``secure_delete`` so the freed cells are zeroed). Copies that outlive the
row — backups, PostgreSQL dead tuples before VACUUM, replicas — stay decryptable only while
their key-encryption key exists: rotating keys and removing old ones (``keys rewrap``, then
drop the key) bounds that window.

Metrics: ``pbf_vault_operations_total{op, result}`` — alert on
``result="decryption_failed"`` (tampering or misplaced rows) and ``result="unknown_key"``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import Row, delete, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id, utcnow
from app.vault.envelope import (
    ALG,
    OwnerContext,
    SealedSecret,
    decrypt_data,
    encrypt_data,
    new_dek,
)
from app.vault.errors import DecryptionFailed, UnknownKeyId, VaultError
from app.vault.key_providers import KeyProvider
from app.vault.models import VaultSecret
from app.vault.secret import Secret, as_secret

log = logging.getLogger("pbf.vault")

SELF_TEST_CONTEXT = OwnerContext("_vault", "_self_test", "_self_test", "probe")


@dataclass(frozen=True, slots=True)
class KeyRef:
    """Where a data key is wrapped: provider name + key id."""

    provider: str
    kek_id: str


class Vault:
    """Envelope encryption over one active :class:`KeyProvider`.

    ``decrypt_providers`` are further providers kept for reading (and re-wrapping) rows a
    previous provider wrote, e.g. local-keyring rows after switching to AWS KMS.
    """

    def __init__(
        self,
        provider: KeyProvider,
        *,
        decrypt_providers: Iterable[KeyProvider] = (),
        operations: Counter | None = None,
    ) -> None:
        self.provider = provider
        self._ops = operations
        self._providers: dict[str, KeyProvider] = {p.name: p for p in decrypt_providers}
        self._providers[provider.name] = provider

    def __repr__(self) -> str:
        return f"Vault(provider={self.provider.name!r}, active={self.active.kek_id!r})"

    # -- keys -------------------------------------------------------------------------------

    @property
    def active(self) -> KeyRef:
        return KeyRef(self.provider.name, self.provider.active_key_id)

    @property
    def providers(self) -> Mapping[str, KeyProvider]:
        return self._providers

    def is_configured(self, ref: KeyRef) -> bool:
        p = self._providers.get(ref.provider)
        return p is not None and p.can_unwrap(ref.kek_id)

    def _provider_for(self, name: str, kek_id: str) -> KeyProvider:
        p = self._providers.get(name)
        if p is None:
            raise UnknownKeyId(
                kek_id,
                provider=name,
                detail=f"key id {kek_id!r} belongs to key provider {name!r}, which is not "
                "configured",
            )
        return p

    def _count(self, op: str, result: str, n: int = 1) -> None:
        if self._ops is not None:
            self._ops.labels(op=op, result=result).inc(n)

    # -- crypto without the database --------------------------------------------------------

    async def seal(self, ctx: OwnerContext, value: str | Secret) -> SealedSecret:
        """Encrypt one value for ``ctx`` under a fresh data key."""
        dek = new_dek()
        nonce, ciphertext = encrypt_data(dek, as_secret(value).reveal(), ctx)
        kek_id, wrapped = await self.provider.wrap(dek, ctx.as_dict())
        return SealedSecret(ALG, self.provider.name, kek_id, wrapped, nonce, ciphertext)

    async def open(self, sealed: SealedSecret, ctx: OwnerContext) -> Secret:
        """Decrypt a sealed value; ``ctx`` must be the owner it was sealed for."""
        provider = self._provider_for(sealed.kek_provider, sealed.kek_id)
        dek = await provider.unwrap(sealed.kek_id, sealed.wrapped_dek, ctx.as_dict())
        return decrypt_data(dek, sealed, ctx)

    async def rewrap_sealed(self, sealed: SealedSecret, ctx: OwnerContext) -> SealedSecret:
        """The same ciphertext with its data key re-wrapped under the active key."""
        provider = self._provider_for(sealed.kek_provider, sealed.kek_id)
        server_side = getattr(provider, "rewrap", None) if provider is self.provider else None
        if server_side is not None:  # e.g. KMS ReEncrypt: the data key stays in the provider
            kek_id, wrapped = await server_side(sealed.kek_id, sealed.wrapped_dek, ctx.as_dict())
        else:
            dek = await provider.unwrap(sealed.kek_id, sealed.wrapped_dek, ctx.as_dict())
            kek_id, wrapped = await self.provider.wrap(dek, ctx.as_dict())
        return SealedSecret(
            sealed.alg, self.provider.name, kek_id, wrapped, sealed.nonce, sealed.ciphertext
        )

    async def self_test(self) -> tuple[bool, str]:
        """Wrap + unwrap + seal + open a random value with the active key (readiness)."""
        probe = secrets.token_urlsafe(16)
        try:
            sealed = await self.seal(SELF_TEST_CONTEXT, probe)
            if sealed.kek_id != self.provider.active_key_id:
                return False, "active key id changed during the self-test"
            ok = (await self.open(sealed, SELF_TEST_CONTEXT)).reveal() == probe
        except VaultError as exc:
            return False, f"self-test failed: {exc.code}"
        return (True, "") if ok else (False, "self-test returned a different value")

    # -- storage ----------------------------------------------------------------------------

    async def put(
        self,
        session: AsyncSession,
        *,
        end_user_id: str,
        owner_type: str,
        owner_id: str,
        field: str,
        value: str | Secret,
    ) -> None:
        """Store (insert or replace) one secret; a fresh data key on every write."""
        ctx = OwnerContext(end_user_id, owner_type, owner_id, field)
        sealed = await self.seal(ctx, value)
        now = utcnow()
        values = {
            "id": new_id("sec"),
            "end_user_id": end_user_id,
            "owner_type": owner_type,
            "owner_id": owner_id,
            "field": field,
            "alg": sealed.alg,
            "kek_provider": sealed.kek_provider,
            "kek_id": sealed.kek_id,
            "wrapped_dek": sealed.wrapped_dek,
            "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext,
            "created_at": now,
            "updated_at": now,
        }
        update = {
            k: values[k]
            for k in (
                "end_user_id",
                "alg",
                "kek_provider",
                "kek_id",
                "wrapped_dek",
                "nonce",
                "ciphertext",
                "updated_at",
            )
        }
        dialect = session.get_bind().dialect.name
        insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
        if dialect not in ("postgresql", "sqlite"):
            raise VaultError(f"unsupported database dialect {dialect!r}")
        stmt = insert_fn(VaultSecret).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["owner_type", "owner_id", "field"], set_=update
        )
        await session.execute(stmt)
        self._count("put", "ok")
        log.debug(
            "vault put",
            extra={
                "owner_type": owner_type,
                "owner_id": owner_id,
                "field": field,
                "kek_id": sealed.kek_id,
            },
        )

    async def get(
        self,
        session: AsyncSession,
        *,
        end_user_id: str,
        owner_type: str,
        owner_id: str,
        field: str,
    ) -> Secret | None:
        """The secret, or ``None`` when there is none.

        Raises :class:`DecryptionFailed` when the stored bytes do not authenticate for this
        owner (tampering, a row moved between owners, a wrong end-user) and
        :class:`UnknownKeyId` when its key is not configured.
        """
        # Columns, not the ORM entity: the identity map must never hand back a stale record
        # after a put() (a Core upsert) in the same session.
        row = (
            await session.execute(
                select(
                    VaultSecret.id,
                    VaultSecret.alg,
                    VaultSecret.kek_provider,
                    VaultSecret.kek_id,
                    VaultSecret.wrapped_dek,
                    VaultSecret.nonce,
                    VaultSecret.ciphertext,
                ).where(
                    VaultSecret.owner_type == owner_type,
                    VaultSecret.owner_id == owner_id,
                    VaultSecret.field == field,
                )
            )
        ).one_or_none()
        if row is None:
            self._count("get", "missing")
            return None
        ctx = OwnerContext(end_user_id, owner_type, owner_id, field)
        try:
            secret = await self.open(_sealed(row), ctx)
        except UnknownKeyId:
            self._count("get", "unknown_key")
            raise
        except DecryptionFailed as exc:
            self._count("get", "decryption_failed")
            log.warning(
                "vault secret failed authentication",
                extra={"secret_id": row.id, "owner_type": owner_type, "field": field},
            )
            raise DecryptionFailed(
                f"secret {row.id} could not be decrypted: {exc.detail}"
            ) from None
        except VaultError:
            self._count("get", "error")
            raise
        self._count("get", "ok")
        return secret

    async def delete(
        self,
        session: AsyncSession,
        *,
        owner_type: str,
        owner_id: str,
        field: str | None = None,
    ) -> int:
        """Shred one field of an owner, or all of its fields; returns the rows removed."""
        stmt = delete(VaultSecret).where(
            VaultSecret.owner_type == owner_type, VaultSecret.owner_id == owner_id
        )
        if field is not None:
            stmt = stmt.where(VaultSecret.field == field)
        n = await self._shred(session, stmt)
        self._count("delete", "ok", n)
        return n

    async def shred_end_user(self, session: AsyncSession, end_user_id: str) -> int:
        """Shred every secret of one end-user (offboarding); returns the rows removed."""
        stmt = delete(VaultSecret).where(VaultSecret.end_user_id == end_user_id)
        n = await self._shred(session, stmt)
        self._count("shred_end_user", "ok", n)
        log.info("vault shredded end-user secrets", extra={"end_user_id": end_user_id, "rows": n})
        return n

    async def _shred(self, session: AsyncSession, stmt: object) -> int:
        if session.get_bind().dialect.name == "sqlite":
            # Zero the freed cells so the wrapped keys do not linger in the file's free pages.
            await session.execute(text("PRAGMA secure_delete = ON"))
        result = await session.execute(stmt)  # type: ignore[call-overload]
        return int(getattr(result, "rowcount", 0) or 0)


def _sealed(row: Row[str, str, str, str, bytes, bytes, bytes]) -> SealedSecret:
    return SealedSecret(
        row.alg,
        row.kek_provider,
        row.kek_id,
        bytes(row.wrapped_dek),
        bytes(row.nonce),
        bytes(row.ciphertext),
    )
