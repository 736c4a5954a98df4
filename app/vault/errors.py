"""Vault errors. None of them ever carries plaintext, key material or ciphertext.

They are :class:`app.errors.AppError` subclasses so that a failure reaching a request handler
renders as a problem document with a stable code instead of an unhandled 500. Key ids and
row ids are not secret and are named to make operator errors actionable.
"""

from __future__ import annotations

from app.errors import AppError


class VaultError(AppError):
    """Base of every vault failure."""

    status, code, title = 500, "vault_error", "Secret storage error"


class KeyringError(VaultError):
    """The key configuration is unusable (bad JSON, wrong key length, no active key …)."""

    status, code, title = 503, "vault_keyring_invalid", "Encryption keys are misconfigured"


class UnknownKeyId(VaultError):
    """A record was wrapped under a key id that is not configured (any more)."""

    status, code, title = 503, "vault_unknown_key_id", "Encryption key not configured"

    def __init__(self, kek_id: str, *, provider: str = "local", detail: str | None = None) -> None:
        self.kek_id = kek_id
        self.provider = provider
        super().__init__(
            detail
            or (
                f"key id {kek_id!r} (provider {provider}) is not configured: add it back to the "
                "keyring (PBF_ENCRYPTION_KEYS / key file) and run 'pbf-headless keys rewrap' "
                "before removing it"
            )
        )


class DecryptionFailed(VaultError):
    """Authentication failed: wrong key, tampered bytes, or a record moved to another owner."""

    status, code, title = 500, "vault_decryption_failed", "Secret could not be decrypted"


class KeyProviderUnavailable(VaultError):
    """The key provider (e.g. AWS KMS) could not be reached or refused the call."""

    status, code, title = 503, "vault_key_provider_unavailable", "Key provider unavailable"
