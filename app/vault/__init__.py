"""Token vault: AES-256-GCM envelope encryption with key ids, rotation and crypto-shredding.

Public surface (the contract other packages code against):

* ``app.state.vault`` — a :class:`Vault`, created by :func:`app.vault.startup.start_vault`.
* ``await vault.put(session, *, end_user_id, owner_type, owner_id, field, value)``
* ``await vault.get(session, *, end_user_id, owner_type, owner_id, field) -> Secret | None``
* ``await vault.delete(session, *, owner_type, owner_id, field=None) -> int``
* ``await vault.shred_end_user(session, end_user_id) -> int``
* :class:`Secret` — plaintext wrapper that never prints its value; ``.reveal()``.
* Errors: :class:`VaultError` (base), :class:`UnknownKeyId`, :class:`DecryptionFailed`,
  :class:`KeyringError`, :class:`KeyProviderUnavailable`.

Design: ``app/vault/envelope.py`` (format and associated data), ``providers.py`` (the
``KeyProvider`` seam and the local keyring), ``awskms.py`` (AWS KMS), ``rotation.py``
(status and batched re-wrap), ``cli.py`` (``pbf-headless keys …``).
"""

from app.vault.errors import (
    DecryptionFailed,
    KeyProviderUnavailable,
    KeyringError,
    UnknownKeyId,
    VaultError,
)
from app.vault.key_providers import KeyProvider, LocalKeyring
from app.vault.secret import Secret
from app.vault.service import Vault

__all__ = [
    "DecryptionFailed",
    "KeyProvider",
    "KeyProviderUnavailable",
    "KeyringError",
    "LocalKeyring",
    "Secret",
    "UnknownKeyId",
    "Vault",
    "VaultError",
]
