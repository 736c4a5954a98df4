"""``vault_secrets``: one row per secret, holding its ciphertext and its wrapped data key.

The plaintext and the unwrapped data key never reach the database. Deleting a row deletes
the only live copy of its wrapped data key (crypto-shredding).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow


class VaultSecret(Base):
    __tablename__ = "vault_secrets"
    __table_args__ = (
        UniqueConstraint("owner_type", "owner_id", "field"),
        Index("ix_vault_secrets_end_user_id", "end_user_id"),
        Index("ix_vault_secrets_kek_id", "kek_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    end_user_id: Mapped[str] = mapped_column(String(64))
    owner_type: Mapped[str] = mapped_column(String(32))
    owner_id: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    #: record format version, e.g. ``A256GCM-ENV-1``
    alg: Mapped[str] = mapped_column(String(32))
    #: key provider that wrapped the data key (``local``, ``awskms``)
    kek_provider: Mapped[str] = mapped_column(String(16))
    kek_id: Mapped[str] = mapped_column(String(300))
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
