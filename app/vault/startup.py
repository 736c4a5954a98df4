"""Build the vault from settings and attach it to the app (``app.state.vault``).

Key sources for the local keyring, in order: ``PBF_ENCRYPTION_KEYS`` (JSON), else
``PBF_VAULT__KEY_FILE``, else — sandbox mode only — ``<data_dir>/keyring.json``, generated
with mode 0600 on first start and reused afterwards. Production mode refuses to start without
configured keys (:func:`app.config.production_problems`), and this module refuses again if
asked to build a production vault without them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from prometheus_client import Counter

from app.config import Settings
from app.vault.awskms import AwsKmsProvider
from app.vault.errors import KeyringError, VaultError
from app.vault.key_providers import (
    KeyProvider,
    LocalKeyring,
    load_key_file,
    parse_keyring,
    sandbox_keyring,
)
from app.vault.service import Vault

log = logging.getLogger("pbf.vault")

SANDBOX_KEYRING = "keyring.json"
READINESS_CACHE_SECONDS = 30.0


def sandbox_keyring_path(settings: Settings) -> Path:
    return settings.data_dir / SANDBOX_KEYRING


def load_local_keyring(settings: Settings, *, required: bool = True) -> LocalKeyring | None:
    """The local keyring from settings (see module docstring); ``None`` if absent and optional."""
    cfg = settings.vault
    if cfg.encryption_keys is not None and cfg.key_file is not None:
        raise KeyringError(
            "both PBF_ENCRYPTION_KEYS and PBF_VAULT__KEY_FILE are set; configure exactly one"
        )
    if cfg.encryption_keys is not None:
        return parse_keyring(cfg.encryption_keys.get_secret_value(), source="PBF_ENCRYPTION_KEYS")
    if cfg.key_file is not None:
        return load_key_file(cfg.key_file)
    if settings.is_sandbox:
        path = sandbox_keyring_path(settings)
        if required or path.exists():
            return sandbox_keyring(path)
        return None
    if required:
        raise KeyringError(
            "no encryption keys configured: set PBF_ENCRYPTION_KEYS or PBF_VAULT__KEY_FILE"
        )
    return None


async def build_vault(settings: Settings, *, operations: Counter | None = None) -> Vault:
    """The vault the settings describe (may call the key provider, e.g. KMS DescribeKey)."""
    if settings.vault.provider == "local":
        keyring = load_local_keyring(settings)
        assert keyring is not None
        return Vault(keyring, operations=operations)
    if settings.vault.provider == "awskms":
        if not settings.vault.aws_kms_key_id:
            raise KeyringError("PBF_VAULT__AWS_KMS_KEY_ID must be set for the awskms provider")
        kms = await AwsKmsProvider.connect(
            key_id=settings.vault.aws_kms_key_id,
            region=settings.vault.aws_region,
            endpoint_url=settings.vault.aws_endpoint_url,
        )
        extra: list[KeyProvider] = []
        local = load_local_keyring(settings, required=False)
        if local is not None:  # rows written before the switch to KMS stay readable
            extra.append(local)
        return Vault(kms, decrypt_providers=extra, operations=operations)
    raise KeyringError(f"unknown vault provider {settings.vault.provider!r}")


def readiness_probe(
    vault: Vault, *, cache_seconds: float = 0.0
) -> Callable[[], Awaitable[tuple[bool, str]]]:
    """Async probe: active key present and a wrap/unwrap self-test passes."""
    cached: dict[str, tuple[float, tuple[bool, str]]] = {}

    async def probe() -> tuple[bool, str]:
        now = time.monotonic()
        hit = cached.get("r")
        if hit is not None and now - hit[0] < cache_seconds:
            return hit[1]
        if not vault.provider.can_unwrap(vault.provider.active_key_id):
            result = (False, f"active key {vault.provider.active_key_id!r} is not loaded")
        else:
            result = await vault.self_test()
        cached["r"] = (now, result)
        return result

    return probe


async def start_vault(app: FastAPI, settings: Settings) -> Vault:
    """Create ``app.state.vault``, self-test it, and register the ``keys`` readiness check."""
    operations = getattr(app.state, "vault_operations", None)
    if operations is None:  # once per app, even if its lifespan runs again
        operations = Counter(
            "pbf_vault_operations_total",
            "Vault operations by result (ok, missing, decryption_failed, unknown_key, error).",
            ["op", "result"],
            registry=app.state.metrics.registry,
        )
        app.state.vault_operations = operations
    vault = await build_vault(settings, operations=operations)
    ok, reason = await vault.self_test()
    if not ok:
        raise VaultError(f"vault self-test failed at startup: {reason}")
    app.state.vault = vault
    cache = 0.0 if vault.provider.name == "local" else READINESS_CACHE_SECONDS
    app.state.readiness_checks["keys"] = readiness_probe(vault, cache_seconds=cache)
    log.info(
        "vault ready",
        extra={
            "key_provider": vault.provider.name,
            "active_key_id": vault.provider.active_key_id,
            "key_ids": vault.provider.key_ids(),
        },
    )
    return vault
