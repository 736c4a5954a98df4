"""Sandbox state that survives a restart (sandbox mode only; a simulation's bookkeeping).

One JSON file (``Settings.sandbox_state_file``, default ``<data_dir>/sandbox-state.json``,
mode 0600) holds what a restart of ``make run`` must not forget:

* the Fivetran simulator: groups, destinations, connections (with their auth blocks, so the
  setup tests still find the tokens), schema configs, certificates, fingerprints, webhooks
  (with their secrets) and running syncs (re-armed on load, see :mod:`.fivetran.syncs`);
* the sandbox OAuth server: grants, access tokens and refresh tokens, so a refresh token the
  vault stored before the restart still refreshes. Its clients are derived from the provider
  registry and need no saving; authorization codes and pending consents are short-lived and
  are not kept.

Not kept: injected faults, the request/delivery logs and queued OAuth misbehaviours (test
controls).

**One owner, no divergence.** Only the process that serves the simulator
(``pbf-headless serve --sandbox``) reads and writes the file, and it holds an exclusive
``flock`` on ``<file>.lock`` for its whole life: a second server on the same data dir refuses
to start instead of growing a second, different simulator. Every other process of the sandbox
(``pbf-headless worker``, ``onboarding resume``, ``fivetran webhooks ensure``) reaches that
server's simulator over HTTP at ``public_base_url`` (see :mod:`app.sandbox.remote`), never the
file. Writes are atomic (temporary file, fsync, ``os.replace``) and happen *before* the answer
of every state-changing request leaves the server (:mod:`app.sandbox.saving`) and after every
sync the clock finishes, so an answered change is on disk.

Reset: stop the server and delete the file, or ``POST /sandbox/fivetran/_control/reset`` and
``POST /sandbox/oauth/_control/reset`` while it runs.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from app.sandbox.fivetran.simulator import Simulator
from app.sandbox.fivetran.state import SimState, now_iso
from app.sandbox.oauth.store import (
    Grant,
    IssuedToken,
    RefreshRecord,
    SandboxStore,
    SandboxUser,
)
from app.vault.key_providers import write_private_file

log = logging.getLogger("pbf.sandbox.persistence")

FORMAT_VERSION = 1
#: The simulator's durable collections (everything else in SimState is test control or logs).
SIM_FIELDS = (
    "groups",
    "destinations",
    "connections",
    "auth",
    "schema_configs",
    "certificates",
    "fingerprints",
    "webhooks",
    "webhook_secrets",
    "sync_ids",
)
#: Expired access tokens older than this are dropped when saving (keeps the file bounded).
ACCESS_TOKEN_KEEP_SECONDS = 86_400


class SandboxStateLocked(RuntimeError):
    """Another process serves the sandbox from the same state file."""


class SandboxPersistence:
    """Loads and saves the sandbox state file while holding its lock."""

    def __init__(self, path: Path, simulator: Simulator, oauth_store: SandboxStore | None) -> None:
        self.path = path
        self.simulator = simulator
        self.oauth_store = oauth_store
        self._lock_file: IO[str] | None = None
        self.saves = 0

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # --- lifecycle ------------------------------------------------------------------------

    def open(self) -> bool:
        """Take the lock and load the file; True when a saved state was loaded."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise SandboxStateLocked(
                f"another sandbox server is using {self.path} (lock {self.lock_path}); "
                "stop it, or give this one its own PBF_DATA_DIR / PBF_SANDBOX__STATE_FILE"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_file = handle
        return self.load()

    def close(self) -> None:
        """Save a last time and release the lock."""
        if self._lock_file is None:
            return
        try:
            self.save()
        finally:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # --- load / save ----------------------------------------------------------------------

    def load(self) -> bool:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return False
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError(f"unsupported sandbox state version {data.get('version')!r}")
            self._load_simulator(data["fivetran"])
            if self.oauth_store is not None:
                self._load_oauth(data.get("oauth") or {})
        except (ValueError, KeyError, TypeError) as exc:
            # Never start on half a state: keep the bad file for inspection and start empty.
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            os.replace(self.path, aside)
            self.simulator.state.reset()
            if self.oauth_store is not None:
                self.oauth_store.reset()
            log.warning(
                "sandbox state %s is unreadable (%s); moved to %s, starting empty",
                self.path,
                exc,
                aside,
            )
            return False
        log.info("sandbox state loaded from %s", self.path)
        return True

    def save(self) -> None:
        if self._lock_file is None:
            return  # only the lock holder writes
        payload = {
            "version": FORMAT_VERSION,
            "saved_at": now_iso(),
            "fivetran": self._dump_simulator(),
            "oauth": self._dump_oauth() if self.oauth_store is not None else {},
        }
        write_private_file(self.path, json.dumps(payload, separators=(",", ":"), sort_keys=True))
        self.saves += 1

    # --- the simulator --------------------------------------------------------------------

    def _dump_simulator(self) -> dict[str, Any]:
        state = self.simulator.state
        return {name: getattr(state, name) for name in SIM_FIELDS}

    def _load_simulator(self, data: dict[str, Any]) -> None:
        fresh = SimState()
        for name in SIM_FIELDS:
            value = data.get(name, {})
            if not isinstance(value, dict):
                raise ValueError(f"fivetran.{name} must be an object")
            setattr(fresh, name, value)
        for name in SIM_FIELDS:
            setattr(self.simulator.state, name, getattr(fresh, name))

    def rearm_syncs(self) -> int:
        """Arm the sync clock for every sync that was running at the last save."""
        armed = 0
        state = self.simulator.state
        for cid, sync_id in list(state.sync_ids.items()):
            connection = state.connections.get(cid)
            if connection is not None and connection["status"].get("sync_state") == "syncing":
                self.simulator.syncs.arm(cid, sync_id)
                armed += 1
        return armed

    # --- the sandbox OAuth server ---------------------------------------------------------

    def _dump_oauth(self) -> dict[str, Any]:
        store = self.oauth_store
        assert store is not None
        horizon = time.time() - ACCESS_TOKEN_KEEP_SECONDS
        return {
            "grants": {k: dataclasses.asdict(g) for k, g in store.grants.items()},
            "access_tokens": {
                k: dataclasses.asdict(t)
                for k, t in store.access_tokens.items()
                if t.issued_at + t.expires_in > horizon
            },
            "refresh_tokens": {k: dataclasses.asdict(r) for k, r in store.refresh_tokens.items()},
        }

    def _load_oauth(self, data: dict[str, Any]) -> None:
        store = self.oauth_store
        assert store is not None
        grants = {
            k: Grant(**{**g, "user": SandboxUser(**g["user"])})
            for k, g in data.get("grants", {}).items()
        }
        access = {k: IssuedToken(**t) for k, t in data.get("access_tokens", {}).items()}
        refresh = {k: RefreshRecord(**r) for k, r in data.get("refresh_tokens", {}).items()}
        store.grants, store.access_tokens, store.refresh_tokens = grants, access, refresh
