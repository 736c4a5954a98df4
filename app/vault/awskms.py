"""AWS KMS key provider (optional extra: ``pip install '.[awskms]'``).

Data keys are wrapped with KMS ``Encrypt`` under a symmetric KMS key and unwrapped with
``Decrypt``. The owner ids go in the ``EncryptionContext`` (KMS's associated data; it shows
in CloudTrail, so it holds ids only), together with the vault's purpose and record format.
``kek_id`` is the key ARN KMS reports, so rows can be counted per key and re-wrapped after
switching ``PBF_VAULT__AWS_KMS_KEY_ID`` to a new key (KMS's automatic yearly rotation keeps
the same ARN and needs no re-wrap). boto3 is synchronous; calls run in a worker thread.
Credentials come from the standard AWS chain (environment, profile, instance role).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from app.vault.envelope import ALG, WRAP_PURPOSE
from app.vault.errors import DecryptionFailed, KeyProviderUnavailable, UnknownKeyId

_KEY_GONE = {
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "KeyUnavailableException",
    "AccessDeniedException",  # e.g. a key id relabelled to a key we may not use
}
_AUTH_FAILED = {"InvalidCiphertextException", "IncorrectKeyException"}


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__


class AwsKmsProvider:
    """KEKs are KMS keys; ``active_key_id`` is the ARN of the configured key."""

    name = "awskms"

    def __init__(self, client: Any, key_arn: str) -> None:
        self._client = client
        self._arn = key_arn

    @classmethod
    async def connect(
        cls, *, key_id: str, region: str | None = None, endpoint_url: str | None = None
    ) -> AwsKmsProvider:
        """Create the client and resolve ``key_id`` (id, ARN or alias) to its key ARN."""
        try:
            import boto3
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise KeyProviderUnavailable(
                "the awskms provider needs boto3: pip install 'pbf-headless[awskms]'"
            ) from None

        def make() -> tuple[Any, str]:
            client = boto3.session.Session().client(
                "kms", region_name=region, endpoint_url=endpoint_url
            )
            meta = client.describe_key(KeyId=key_id)["KeyMetadata"]
            if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
                raise KeyProviderUnavailable(f"KMS key {key_id!r} is not a symmetric key")
            if not meta.get("Enabled", True):
                raise KeyProviderUnavailable(f"KMS key {key_id!r} is disabled")
            return client, str(meta["Arn"])

        try:
            client, arn = await asyncio.to_thread(make)
        except KeyProviderUnavailable:
            raise
        except Exception as exc:
            raise KeyProviderUnavailable(
                f"KMS key {key_id!r} cannot be used ({_error_code(exc)})"
            ) from None
        return cls(client, arn)

    @property
    def active_key_id(self) -> str:
        return self._arn

    def key_ids(self) -> list[str]:
        return [self._arn]

    def can_unwrap(self, kek_id: str) -> bool:
        # KMS decides (key policy, key state); any KMS key ARN may still be usable.
        return kek_id.startswith("arn:") or kek_id == self._arn

    def __repr__(self) -> str:
        return f"AwsKmsProvider(active={self._arn!r})"

    @staticmethod
    def _context(ctx: Mapping[str, str]) -> dict[str, str]:
        return {"purpose": WRAP_PURPOSE, "alg": ALG, **ctx}

    async def wrap(self, dek: bytes, ctx: Mapping[str, str]) -> tuple[str, bytes]:
        try:
            resp = await asyncio.to_thread(
                self._client.encrypt,
                KeyId=self._arn,
                Plaintext=dek,
                EncryptionContext=self._context(ctx),
            )
        except Exception as exc:
            raise KeyProviderUnavailable(
                f"KMS Encrypt under {self._arn!r} failed ({_error_code(exc)})"
            ) from None
        return str(resp["KeyId"]), bytes(resp["CiphertextBlob"])

    async def rewrap(self, kek_id: str, blob: bytes, ctx: Mapping[str, str]) -> tuple[str, bytes]:
        """Server-side re-wrap (KMS ``ReEncrypt``) to the active key: during a rotation between
        KMS keys the data key never leaves KMS in plaintext."""
        context = self._context(ctx)
        try:
            resp = await asyncio.to_thread(
                self._client.re_encrypt,
                CiphertextBlob=blob,
                SourceKeyId=kek_id,
                SourceEncryptionContext=context,
                DestinationKeyId=self._arn,
                DestinationEncryptionContext=context,
            )
        except Exception as exc:
            raise self._map_error(exc, kek_id, "ReEncrypt") from None
        return str(resp["KeyId"]), bytes(resp["CiphertextBlob"])

    def _map_error(self, exc: Exception, kek_id: str, op: str) -> Exception:
        code = _error_code(exc)
        if code in _AUTH_FAILED:
            return DecryptionFailed(
                f"KMS refused the wrapped data key under {kek_id!r} ({code}): tampered, "
                "or moved to another owner"
            )
        if code in _KEY_GONE:
            return UnknownKeyId(
                kek_id, provider=self.name, detail=f"KMS key {kek_id!r} is not usable ({code})"
            )
        return KeyProviderUnavailable(f"KMS {op} under {kek_id!r} failed ({code})")

    async def unwrap(self, kek_id: str, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        try:
            resp = await asyncio.to_thread(
                self._client.decrypt,
                KeyId=kek_id,
                CiphertextBlob=blob,
                EncryptionContext=self._context(ctx),
            )
        except Exception as exc:
            raise self._map_error(exc, kek_id, "Decrypt") from None
        return bytes(resp["Plaintext"])
