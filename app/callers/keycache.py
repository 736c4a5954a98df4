"""A short-lived, in-process cache of verified API keys.

Authenticating a request otherwise costs a database round-trip (the key row) before the
request does its own work: on a status read that is half the database time. A key verified
against the database is remembered for ``api.key_cache_seconds`` (default 5 s), keyed by the
SHA-256 of the presented token (the token itself is never kept).

Revocation:

* in this process it takes effect immediately: :func:`forget` (called by
  :func:`app.callers.service.revoke_api_key` when it marks the row) drops the key and refuses
  to cache it again for the life of the process — a revoked key is never un-revoked, so the
  tombstone can never hide a valid key, and a request that read the row before the revoking
  transaction committed cannot put it back;
* in other processes (other workers, the CLI) it takes effect within ``key_cache_seconds``.

``last_used_at`` keeps its one-minute resolution: an entry whose ``last_used_at`` is older than
that is treated as a miss, so the database path records the use (and refreshes the entry).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.callers.service import Caller

#: Entries kept at most; beyond that the oldest are dropped (one deployment has few keys).
MAX_ENTRIES = 1024


@dataclass(frozen=True)
class _Entry:
    caller: Caller
    last_used_at: datetime | None
    expires: float


class VerifiedKeyCache:
    """Process-wide map ``sha256(token) -> (Caller, last_used_at, expiry)``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[bytes, _Entry] = {}
        self._revoked: set[str] = set()
        self._lock = threading.Lock()  # the CLI and tests may use it from several threads
        self._clock = clock

    @staticmethod
    def token_digest(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, digest: bytes, now: datetime, last_used_resolution: timedelta) -> Caller | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if (
            entry.expires <= self._clock()
            or entry.caller.key_id in self._revoked
            or entry.last_used_at is None
            or now - entry.last_used_at > last_used_resolution
        ):
            self._entries.pop(digest, None)
            return None
        return entry.caller

    def put(self, digest: bytes, caller: Caller, last_used_at: datetime, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            if caller.key_id in self._revoked:
                return
            if len(self._entries) >= MAX_ENTRIES:
                for stale in list(self._entries)[: MAX_ENTRIES // 4]:
                    del self._entries[stale]
            self._entries[digest] = _Entry(caller, last_used_at, self._clock() + ttl)

    def forget(self, key_id: str) -> None:
        """Drop ``key_id`` now and never cache it again in this process (it was revoked)."""
        with self._lock:
            self._revoked.add(key_id)
            for digest in [d for d, e in self._entries.items() if e.caller.key_id == key_id]:
                del self._entries[digest]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The one cache of this process (revocation must reach it from any code path).
key_cache = VerifiedKeyCache()
