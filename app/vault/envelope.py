"""Envelope format ``A256GCM-ENV-1``: the bytes, the associated data, seal and open.

One record = one secret::

    dek        = 32 random bytes (fresh for every write)
    nonce      = 12 random bytes
    ciphertext = AES-256-GCM(dek).encrypt(nonce, plaintext, data_aad(ctx))   # tag included
    wrapped    = KeyProvider.wrap(dek, ctx)  -> (kek_id, blob)

``ctx`` is the owner of the secret (end-user, owner type, owner id, field). It is bound into
the data ciphertext's associated data *and* into the wrap of the data key, so bytes copied
into another row fail to authenticate at both layers. The associated data is a canonical,
length-prefixed encoding (:func:`canonical`) that ids containing separators cannot make
ambiguous.

Each data key encrypts exactly one value, so its random nonce can never repeat. Local key
wraps use random 96-bit nonces under the key-encryption key: rotate it well before ~2^32
wraps (NIST SP 800-38D), which ``keys rotate`` + ``keys rewrap`` make routine.

The data key only ever exists unwrapped in memory during one seal/open; the database row
holds it wrapped, so deleting the row destroys the key (crypto-shredding).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.vault.errors import DecryptionFailed, VaultError
from app.vault.secret import Secret

ALG = "A256GCM-ENV-1"
NONCE_BYTES = 12
DEK_BYTES = 32
DATA_PURPOSE = "pbf-vault/data"
WRAP_PURPOSE = "pbf-vault/dek"


@dataclass(frozen=True, slots=True)
class OwnerContext:
    """Who a secret belongs to; becomes the associated data of both encryption layers."""

    end_user_id: str
    owner_type: str
    owner_id: str
    field: str

    def as_dict(self) -> dict[str, str]:
        """Ids only (safe for a KMS EncryptionContext, which is logged in plaintext)."""
        return {
            "end_user_id": self.end_user_id,
            "owner_type": self.owner_type,
            "owner_id": self.owner_id,
            "field": self.field,
        }


def canonical(obj: Mapping[str, str]) -> bytes:
    """Canonical, unambiguous bytes for associated data.

    Sorted ``key=value`` pairs, each part length-prefixed (``<len>:<text>``), so no id can
    forge a boundary whatever characters it contains. (Four times faster than canonical
    JSON, which dominated the cost of a seal.)
    """
    parts = []
    for key in sorted(obj):
        value = obj[key]
        parts.append(f"{len(key)}:{key}={len(value)}:{value};")
    return "".join(parts).encode("utf-8")


def data_aad(ctx: OwnerContext, *, alg: str = ALG) -> bytes:
    return canonical({"purpose": DATA_PURPOSE, "alg": alg, **ctx.as_dict()})


def wrap_aad(ctx: Mapping[str, str], *, provider: str, kek_id: str, wrap_alg: str) -> bytes:
    """Associated data of a data-key wrap: the owner ids plus the wrapping key and algorithm."""
    return canonical(
        {
            "purpose": WRAP_PURPOSE,
            "provider": provider,
            "kek_id": kek_id,
            "wrap_alg": wrap_alg,
            **ctx,
        }
    )


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """The stored form of one secret (columns of ``vault_secrets``)."""

    alg: str
    kek_provider: str
    kek_id: str
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes

    def __repr__(self) -> str:  # bytes are not secret, but are noise in logs
        return (
            f"SealedSecret(alg={self.alg!r}, provider={self.kek_provider!r}, kek={self.kek_id!r})"
        )


def new_dek() -> bytes:
    return AESGCM.generate_key(bit_length=DEK_BYTES * 8)


def encrypt_data(dek: bytes, plaintext: str, ctx: OwnerContext) -> tuple[bytes, bytes]:
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(dek).encrypt(nonce, plaintext.encode("utf-8"), data_aad(ctx))


def decrypt_data(dek: bytes, sealed: SealedSecret, ctx: OwnerContext) -> Secret:
    if sealed.alg != ALG:
        raise VaultError(f"unsupported vault record format {sealed.alg!r}", code="vault_format")
    if len(sealed.nonce) != NONCE_BYTES:
        raise DecryptionFailed("secret could not be decrypted (malformed nonce)")
    try:
        raw = AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, data_aad(ctx, alg=sealed.alg))
    except InvalidTag:
        raise DecryptionFailed(
            "secret could not be decrypted: ciphertext, nonce or owner binding does not match"
        ) from None
    try:
        return Secret(raw.decode("utf-8"))
    except UnicodeDecodeError:  # authenticated, so this cannot happen unless the writer erred
        raise DecryptionFailed("secret could not be decoded") from None
