"""In-memory state of the Fivetran simulator, plus deterministic fakes (ids, keys, schemas)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_ADJECTIVES = (
    "amber brisk calm dapper eager fancy gentle hollow icy jolly keen lucid mellow nimble "
    "olive proud quiet rapid sandy tidy upbeat vivid witty young zesty bold civic dusky "
    "early frank grand humble ideal jaunty kind lively modest noble"
).split()
_NOUNS = (
    "acorn badger canyon dolphin ember falcon glacier harbor island jigsaw kettle lantern "
    "meadow nectar orchard pepper quartz river saddle thistle umbra valley walnut yonder "
    "zephyr anchor beacon cobalt delta ferry garnet hazel igloo juniper kayak lotus"
).split()


def now_iso() -> str:
    """Fivetran-style timestamp: ``2026-05-22T00:06:08.638Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_word_id(taken: set[str] | dict[str, Any]) -> str:
    """A Fivetran-looking id (``speak_inexpensive``) not in ``taken``."""
    for _ in range(50):
        candidate = f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"
        if candidate not in taken:
            return candidate
    while True:
        candidate = (
            f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}{secrets.randbelow(10**6)}"
        )
        if candidate not in taken:
            return candidate


def _expand(seed: str, nbytes: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < nbytes:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return out[:nbytes]


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ssh_rsa_public_key(seed: str, comment: str = "") -> str:
    """A well-formed ``ssh-rsa`` public key (RFC 4253 wire format) derived from ``seed``.

    Simulation only: the modulus is deterministic bytes, not a product of two primes."""
    modulus = bytearray(_expand(seed, 256))
    modulus[0] |= 0x80
    modulus[-1] |= 0x01
    blob = (
        _ssh_string(b"ssh-rsa")
        + _ssh_string((65537).to_bytes(3, "big"))
        + _ssh_string(b"\x00" + bytes(modulus))
    )
    key = "ssh-rsa " + base64.b64encode(blob).decode()
    return f"{key} {comment}".strip()


def ssh_fingerprint(public_key: str) -> str:
    """OpenSSH-style SHA256 fingerprint (unpadded base64) of an ``ssh-rsa …`` key."""
    blob = base64.b64decode(public_key.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def encode_cursor(skip: int) -> str:
    return (
        base64.b64encode(json.dumps({"skip": skip}, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def decode_cursor(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    data = json.loads(base64.b64decode(padded, validate=True).decode())
    skip = data["skip"]
    if not isinstance(skip, int) or skip < 0:
        raise ValueError("bad skip")
    return skip


_TABLE_POOL = (
    "accounts contacts leads opportunities campaigns invoices payments orders customers "
    "products events users tickets comments projects tasks ads ad_groups reports sessions"
).split()


def generated_schema(service: str, schema_format: str, schema: str) -> dict[str, Any]:
    """A small, deterministic schema config for a connection (what a reload would capture)."""
    digest = hashlib.sha256(service.encode()).digest()
    picks: list[str] = []
    for b in digest:
        table = _TABLE_POOL[b % len(_TABLE_POOL)]
        if table not in picks:
            picks.append(table)
        if len(picks) == 3:
            break
    if service in ("salesforce", "salesforce_sandbox"):
        source_schemas = ["salesforce"]
    elif service.startswith("netsuite"):
        source_schemas = ["netsuite"]
    elif schema_format == "schema_prefix":
        source_schemas = ["public", "sales"]
    else:
        source_schemas = [schema.split(".")[0]]
    schemas: dict[str, Any] = {}
    for src in source_schemas:
        dest = f"{schema}_{src}" if schema_format == "schema_prefix" else schema.split(".")[0]
        tables = {}
        for t in picks:
            tables[t] = {
                "name_in_destination": t,
                "enabled": True,
                "sync_mode": "SOFT_DELETE",
                "supports_columns_config": True,
                "supports_history_mode": True,
                "enabled_patch_settings": {"allowed": True},
                "columns": {
                    "id": {
                        "name_in_destination": "id",
                        "enabled": True,
                        "hashed": False,
                        "is_primary_key": True,
                        "enabled_patch_settings": {
                            "allowed": False,
                            "reason_code": "SYSTEM_COLUMN",
                            "reason": "Primary key",
                        },
                    }
                },
            }
        schemas[src] = {"name_in_destination": dest, "enabled": True, "tables": tables}
    return {
        "enable_new_by_default": True,
        "schema_change_handling": "ALLOW_ALL",
        "schemas": schemas,
    }


@dataclass
class Fault:
    """An injected failure (control API)."""

    method: str | None
    path_regex: str
    status: int | None
    count: int
    retry_after: float | None = None
    delay_seconds: float = 0.0
    code: str | None = None
    after: bool = False


@dataclass
class SimState:
    """Everything the simulator knows; reset by ``POST /_control/reset``."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    destinations: dict[str, dict[str, Any]] = field(default_factory=dict)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    auth: dict[str, dict[str, Any]] = field(default_factory=dict)  # connection id → auth block
    schema_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    certificates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    fingerprints: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    webhook_secrets: dict[str, str | None] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=2000))
    sync_ids: dict[str, str] = field(default_factory=dict)

    def reset(self) -> None:
        fresh = SimState()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))
