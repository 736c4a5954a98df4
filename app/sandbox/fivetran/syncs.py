"""The sync clock of the Fivetran simulator (simulation): syncs finish by themselves.

A sync started by ``POST …/sync``, ``…/resync``, ``…/force`` or the first unpause of a
connection that never synced is *armed* here; ``seconds`` later it finishes ``SUCCESSFUL``
through the same code path as the control API's ``sync-result`` (state, ``succeeded_at``,
schema capture and the signed ``sync_end`` webhook). ``seconds == 0`` disables the clock:
only the control API finishes syncs (what most tests want).

A timer only finishes the sync it was armed for: a control-API result, a newer sync or a
deleted connection makes it a no-op. Timers live on the event loop of the process that
serves the simulator; :meth:`SyncClock.aclose` cancels them at shutdown, and after a restart
the persisted ``syncing`` connections are armed again (:mod:`app.sandbox.fivetran.persistence`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("pbf.sandbox.fivetran.syncs")

#: ``finish(connection_id, sync_id)``: finish that sync if it is still the running one.
Finisher = Callable[[str, str], None]


class SyncClock:
    """One timer per syncing connection."""

    def __init__(
        self,
        seconds: float,
        finish: Finisher,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.seconds = seconds
        self._finish = finish
        self._sleep = sleep
        self._timers: dict[str, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def arm(self, connection_id: str, sync_id: str) -> None:
        """Finish ``sync_id`` of ``connection_id`` after ``seconds`` (replaces an older timer)."""
        if not self.enabled:
            return
        self.disarm(connection_id)
        task = asyncio.ensure_future(self._run(connection_id, sync_id))
        self._timers[connection_id] = task
        task.add_done_callback(lambda t: self._forget(connection_id, t))

    def disarm(self, connection_id: str) -> None:
        task = self._timers.pop(connection_id, None)
        if task is not None and not task.done():
            task.cancel()

    def pending(self) -> list[str]:
        """Connection ids with an armed timer."""
        return [cid for cid, t in self._timers.items() if not t.done()]

    def _forget(self, connection_id: str, task: asyncio.Task[None]) -> None:
        if self._timers.get(connection_id) is task:
            del self._timers[connection_id]

    async def _run(self, connection_id: str, sync_id: str) -> None:
        await self._sleep(self.seconds)
        try:
            self._finish(connection_id, sync_id)
        except Exception:  # a timer must never take the loop down; the sync stays "syncing"
            log.exception("sandbox sync %s of %s could not finish", sync_id, connection_id)

    async def aclose(self) -> None:
        """Cancel every timer (shutdown)."""
        tasks = list(self._timers.values())
        self._timers.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
