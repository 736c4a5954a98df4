"""Key-encryption-key providers: the ``KeyProvider`` seam and the local keyring.

A provider wraps and unwraps 32-byte data keys under a key-encryption key (KEK) named by a
key id. The vault stores ``(provider name, kek_id, blob)`` next to each ciphertext, so a
reader always knows which key to ask for, and ``keys status`` can count rows per key.

Implemented: :class:`LocalKeyring` (default; AES-256-GCM key wrap with the key id, wrap
algorithm and owner ids as associated data) and ``app.vault.awskms.AwsKmsProvider``
(optional extra; KMS ``Encrypt``/``Decrypt`` with the owner ids as EncryptionContext).

Seam for further providers (documented, not implemented):

* **GCP Cloud KMS** — ``encrypt``/``decrypt`` on a CryptoKey; ``kek_id`` = the CryptoKey
  version resource name returned by ``encrypt``; pass :func:`app.vault.envelope.canonical`
  of ``ctx`` as ``additional_authenticated_data``.
* **HashiCorp Vault transit** — ``POST /v1/transit/encrypt/<key>`` with base64 ``plaintext``
  = the DEK and ``associated_data`` (AEAD key types) or ``context`` (``derived=true`` keys) =
  ``canonical(ctx)``; ``kek_id`` = ``<key>:v<N>`` parsed from the ``vault:v<N>:`` prefix;
  ``/transit/rewrap`` can re-wrap server-side.

A provider needs: a stable ``name`` (stored per row), ``active_key_id`` (where new wraps go),
``wrap``/``unwrap`` (async; must raise :class:`UnknownKeyId` for a key it does not have,
:class:`DecryptionFailed` for an authentication failure, :class:`KeyProviderUnavailable` for
transport trouble), ``key_ids()`` (keys it can unwrap with, for status and readiness) and
``can_unwrap(kek_id)``. Optionally ``async rewrap(kek_id, blob, ctx) -> (kek_id, blob)``:
a server-side re-wrap to its active key (KMS ``ReEncrypt``, Vault ``transit/rewrap``) that
``keys rewrap`` prefers, so the data key never leaves the provider during rotation.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.db import utcnow
from app.vault.envelope import DEK_BYTES, NONCE_BYTES, wrap_aad
from app.vault.errors import DecryptionFailed, KeyringError, UnknownKeyId

log = logging.getLogger("pbf.vault")

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}\Z")
LOCAL_WRAP_ALG = "A256GCM-KW-1"


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps data keys under a key-encryption key named by a key id."""

    name: str

    @property
    def active_key_id(self) -> str:
        """Key id new wraps use."""
        ...

    async def wrap(self, dek: bytes, ctx: Mapping[str, str]) -> tuple[str, bytes]:
        """Wrap ``dek`` under the active key; returns ``(kek_id, blob)``."""
        ...

    async def unwrap(self, kek_id: str, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        """Unwrap a data key wrapped under ``kek_id`` with the same ``ctx``."""
        ...

    def key_ids(self) -> list[str]:
        """Key ids this provider can unwrap with (the active one first)."""
        ...

    def can_unwrap(self, kek_id: str) -> bool:
        """Whether ``kek_id`` is usable here (a KMS provider may not know in advance)."""
        ...


class LocalKeyring:
    """KEKs held in process memory, loaded from ``PBF_ENCRYPTION_KEYS`` or a key file.

    Wrap blob = ``nonce(12) || AES-256-GCM(kek).encrypt(nonce, dek, aad)`` where ``aad``
    binds the provider name, key id, wrap algorithm and owner ids.
    """

    name = "local"

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if not keys:
            raise KeyringError("the keyring holds no keys")
        for kid, key in keys.items():
            if not KEY_ID_RE.match(kid):
                raise KeyringError(
                    f"invalid key id {kid!r}: use 1-64 characters of A-Z a-z 0-9 . _ : -"
                )
            if len(key) != DEK_BYTES:
                raise KeyringError(f"key {kid!r} must be 32 bytes (base64 of 32 random bytes)")
        if active not in keys:
            raise KeyringError(f"active key id {active!r} is not one of the configured keys")
        self._keys = {kid: AESGCM(key) for kid, key in keys.items()}
        self._active = active

    @property
    def active_key_id(self) -> str:
        return self._active

    def key_ids(self) -> list[str]:
        return [self._active, *sorted(k for k in self._keys if k != self._active)]

    def can_unwrap(self, kek_id: str) -> bool:
        return kek_id in self._keys

    def __repr__(self) -> str:
        return f"LocalKeyring(active={self._active!r}, key_ids={self.key_ids()!r})"

    async def wrap(self, dek: bytes, ctx: Mapping[str, str]) -> tuple[str, bytes]:
        kid = self._active
        nonce = os.urandom(NONCE_BYTES)
        aad = wrap_aad(ctx, provider=self.name, kek_id=kid, wrap_alg=LOCAL_WRAP_ALG)
        return kid, nonce + self._keys[kid].encrypt(nonce, dek, aad)

    async def unwrap(self, kek_id: str, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        aead = self._keys.get(kek_id)
        if aead is None:
            raise UnknownKeyId(kek_id, provider=self.name)
        if len(blob) != NONCE_BYTES + DEK_BYTES + 16:
            raise DecryptionFailed(f"wrapped data key under {kek_id!r} is malformed")
        aad = wrap_aad(ctx, provider=self.name, kek_id=kek_id, wrap_alg=LOCAL_WRAP_ALG)
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"wrapped data key under {kek_id!r} failed authentication "
                "(tampered, or moved to another owner)"
            ) from None


# --- keyring documents -------------------------------------------------------------------


def generate_key() -> str:
    """A new random 32-byte key, base64 (standard alphabet, padded)."""
    return base64.b64encode(secrets.token_bytes(DEK_BYTES)).decode()


def new_key_id(existing: set[str] | None = None) -> str:
    """A fresh key id ``k<YYYYMMDD>-<6 hex>``."""
    while True:
        kid = f"k{utcnow():%Y%m%d}-{secrets.token_hex(3)}"
        if not existing or kid not in existing:
            return kid


def _decode_key(kid: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"key {kid!r} must be a base64 string")
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        else:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"key {kid!r} is not valid base64") from None
    if len(raw) != DEK_BYTES:
        raise KeyringError(f"key {kid!r} must decode to 32 bytes, not {len(raw)}")
    return raw


def parse_keyring(text: str, *, source: str) -> LocalKeyring:
    """Parse ``{"active": kid, "keys": {kid: base64}}``. Messages never echo key material."""
    try:
        doc = json.loads(text)
    except ValueError:
        raise KeyringError(f"{source}: not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
        raise KeyringError(f'{source}: expected {{"active": "<kid>", "keys": {{"<kid>": "..."}}}}')
    active = doc.get("active")
    if not isinstance(active, str):
        raise KeyringError(f'{source}: "active" must name one of the keys')
    keys = {str(kid): _decode_key(str(kid), v) for kid, v in doc["keys"].items()}
    try:
        return LocalKeyring(keys, active)
    except KeyringError as exc:
        raise KeyringError(f"{source}: {exc.detail}") from None


def keyring_document(active: str, keys: Mapping[str, str]) -> str:
    return json.dumps({"active": active, "keys": dict(keys)}, indent=2) + "\n"


def _private_temp_file(path: Path, text: str) -> Path:
    """A new mode-0600 temp file beside ``path`` holding ``text``, synced to disk. The
    caller moves or links it into place and removes what is left of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (never world-readable)."""
    tmp = _private_temp_file(path, text)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_key_file(path: Path) -> LocalKeyring:
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyringError(f"key file {path}: cannot read ({exc.strerror})") from None
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO) and not path.is_symlink():
        log.warning(
            "key file is readable by group/others; chmod 600 it",
            extra={"key_file": str(path), "mode": oct(mode & 0o777)},
        )
    return parse_keyring(text, source=f"key file {path}")


def sandbox_keyring(path: Path) -> LocalKeyring:
    """Load the sandbox keyring at ``path``, generating it (0600) on first use.

    Creation is atomic (write a private temp file, then hard-link it into place), so
    concurrent first starts agree on one keyring and nobody reads a half-written file.
    """
    if path.exists():
        return load_key_file(path)
    kid = new_key_id()
    doc = keyring_document(kid, {kid: generate_key()})
    tmp = _private_temp_file(path, doc)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:  # another process won the race: use theirs
            return load_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("generated sandbox keyring", extra={"key_file": str(path), "active_key_id": kid})
    return parse_keyring(doc, source=f"key file {path}")
