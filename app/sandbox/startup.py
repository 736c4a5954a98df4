"""Lifespan start of the in-process sandbox (``serve --sandbox`` and the test apps).

Runs only when the app mounted the sandbox (:func:`app.main._mount_sandbox`): loads the
persisted sandbox state when ``sandbox.persist`` is on (taking the state file's lock, see
:mod:`app.sandbox.persistence`), re-arms the syncs that were running, and on shutdown stops
the sync clock, saves and releases the lock.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

from fastapi import FastAPI

from app.config import Settings
from app.sandbox.fivetran import Simulator
from app.sandbox.persistence import SandboxPersistence

log = logging.getLogger("pbf.sandbox")


async def start_sandbox(app: FastAPI, settings: Settings, stack: AsyncExitStack) -> None:
    simulator: Simulator | None = getattr(app.state, "fivetran_simulator", None)
    if simulator is None:
        return
    if settings.sandbox.persist:
        oauth = getattr(app.state, "sandbox_oauth", None)
        persistence = SandboxPersistence(
            settings.sandbox_state_file, simulator, oauth.store if oauth is not None else None
        )
        loaded = persistence.open()
        stack.callback(persistence.close)  # runs after the clock stopped (LIFO)
        app.state.sandbox_persistence = persistence
        simulator.on_change = persistence.save
        simulator.state_file = str(persistence.path)
        armed = persistence.rearm_syncs()
        log.info(
            "sandbox state %s (%s; %d running sync(s) re-armed)",
            persistence.path,
            "loaded" if loaded else "new",
            armed,
        )
    stack.push_async_callback(simulator.syncs.aclose)
