"""The events worker: delivery loop and reconciliation loop.

Runs inside the API process (``EventsSettings.run_worker_in_api``, started by
:mod:`app.events.startup`) or alone as ``pbf-headless worker``; several workers share the work
on PostgreSQL. Tests disable the background loop and drive :meth:`EventsWorker.run_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import audit
from app.config import Settings
from app.db import utcnow
from app.events import delivery
from app.events.metrics import EventsMetrics
from app.events.receivers import Endpoint, configured_endpoints
from app.events.retention import prune

log = logging.getLogger("pbf.events.worker")

#: One reconciliation pass: given the clock, returns the connections reconciled.
Reconciler = Callable[[Callable[[], datetime]], Awaitable[int]]

_SEND_CONCURRENCY = 10


def default_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class RunStats:
    """What one iteration did."""

    fanned_out: int = 0
    claimed: int = 0
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    lost: int = 0
    reconciled: int = 0
    outcomes: list[tuple[str, str | None]] = field(default_factory=list)


class EventsWorker:
    """Delivers the outbox and reconciles stale connections.

    ``now`` is injectable so tests can move time forward (backoff, lease expiry) without
    sleeping; ``reconciler`` is the reconciliation pass (``app.connections.reconcile``), handed
    in so this domain knows nothing of connections; without it the worker only delivers.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        http: httpx.AsyncClient,
        reconciler: Reconciler | None = None,
        worker_id: str | None = None,
        now: Callable[[], datetime] = utcnow,
        reconcile_enabled: bool = True,
        metrics: EventsMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.http = http
        self.reconciler = reconciler
        self.worker_id = worker_id or default_worker_id()
        self.now = now
        self.reconcile_enabled = reconcile_enabled
        self.metrics = metrics
        self.endpoints: dict[str, Endpoint] = configured_endpoints(settings)
        cfg = settings.events
        # The configured lease is honoured (a dead worker's rows come back after it): each
        # send gets at most 80 % of it, and a batch is only as large as the sends that fit
        # into one lease, waiting for a send slot included.
        self.lease_seconds = cfg.lease_seconds
        self.send_timeout = min(cfg.delivery_timeout_seconds, cfg.lease_seconds * 0.8)
        waves = max(1, math.floor(cfg.lease_seconds * 0.8 / self.send_timeout))
        self.claim_limit = min(cfg.batch_size, _SEND_CONCURRENCY * waves)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._last_reconcile: datetime | None = None

    # -- one iteration -------------------------------------------------------------------

    async def run_deliveries_once(self) -> RunStats:
        """Fan out new events, lease eligible deliveries, send them, record outcomes."""
        cfg = self.settings.events
        stats = RunStats()
        if not self.endpoints:
            # A process without endpoints (e.g. a replica missing PBF_EVENTS__ENDPOINTS) must
            # not mark events as handled: they wait for a worker that knows where to send.
            return stats
        async with self.sessionmaker() as session, session.begin():
            kinds = await delivery.fan_out(session, self.endpoints, now=self.now())
        stats.fanned_out = len(kinds)
        if self.metrics is not None:
            for kind in kinds:
                self.metrics.fanned_out.labels(kind).inc()
        async with self.sessionmaker() as session, session.begin():
            items = await delivery.claim(
                session,
                worker_id=self.worker_id,
                endpoint_ids=sorted(self.endpoints),
                now=self.now(),
                lease_seconds=self.lease_seconds,
                limit=self.claim_limit,
            )
        stats.claimed = len(items)
        if not items:
            return stats
        gate = asyncio.Semaphore(_SEND_CONCURRENCY)

        async def deliver(item: delivery.Claimed) -> None:
            endpoint = self.endpoints[item.endpoint_id]
            async with gate:
                outcome = await delivery.send(
                    self.http, endpoint, item, timeout_seconds=self.send_timeout
                )
            async with self.sessionmaker() as session, session.begin():
                status = await delivery.finish(
                    session,
                    item,
                    outcome,
                    worker_id=self.worker_id,
                    now=self.now(),
                    max_attempts=cfg.max_attempts,
                    backoff_base=cfg.backoff_base_seconds,
                    backoff_max=cfg.backoff_max_seconds,
                )
            stats.outcomes.append((item.delivery_id, status))
            if self.metrics is not None:
                label = "retrying" if status == "pending" else (status or "lease_lost")
                self.metrics.deliveries.labels(item.endpoint_id, label).inc()
            if status is None:
                stats.lost += 1
            elif status == "delivered":
                stats.delivered += 1
            elif status == "dead":
                stats.dead += 1
            else:
                stats.retrying += 1

        results = await asyncio.gather(*(deliver(item) for item in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                # The outcome could not be recorded: the lease expires and the delivery is
                # retried (at least once).
                stats.lost += 1
                log.error(
                    "recording a delivery outcome failed",
                    extra={"error_type": type(result).__name__},
                )
        return stats

    async def prune_once(self) -> tuple[int, int]:
        """Delete settled events and receipts past ``retention_days`` (one batch)."""
        async with self.sessionmaker() as session, session.begin():
            pruned = await prune(
                session, now=self.now(), retention_days=self.settings.events.retention_days
            )
            if self.settings.audit.retention_days > 0:  # the audit trail's only delete path
                await audit.purge_expired(
                    session, retention_days=self.settings.audit.retention_days, now=self.now()
                )
            return pruned

    async def reconcile_once(self) -> int:
        """One reconciliation pass (bounded by the request budget); returns connections done."""
        self._last_reconcile = self.now()
        if self.reconciler is None:
            return 0
        return await self.reconciler(self.now)

    async def run_once(self, *, reconcile: bool | None = None) -> RunStats:
        """One iteration: deliveries, then reconciliation when due (or when forced)."""
        stats = await self.run_deliveries_once()
        due = reconcile
        if due is None:
            interval = self.settings.events.reconcile_interval_seconds
            due = (
                self._last_reconcile is None
                or (self.now() - self._last_reconcile).total_seconds() >= interval
            )
        if due and self.reconcile_enabled and self.reconciler is not None:
            try:
                stats.reconciled = await self.reconcile_once()
            except Exception as exc:  # the delivery loop must survive a reconcile failure
                log.error("reconciliation failed", extra={"error_type": type(exc).__name__})
        return stats

    async def run_until_idle(self, *, max_rounds: int = 100) -> list[RunStats]:
        """Deliver until nothing is claimable now (tests, ``worker --once``)."""
        rounds: list[RunStats] = []
        for _ in range(max_rounds):
            stats = await self.run_deliveries_once()
            rounds.append(stats)
            if stats.claimed == 0 and stats.fanned_out == 0:
                break
        return rounds

    # -- background loops ----------------------------------------------------------------

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def delivery_loop(self) -> None:
        """Deliver continuously; sleep ``poll_interval_seconds`` only when idle."""
        poll = self.settings.events.poll_interval_seconds
        while not self._stopping.is_set():
            busy = False
            try:
                stats = await self.run_deliveries_once()
                busy = stats.claimed > 0 or stats.fanned_out > 0
            except Exception as exc:
                log.error(
                    "events delivery iteration failed", extra={"error_type": type(exc).__name__}
                )
            if busy:
                await asyncio.sleep(0)
            else:
                await self._idle(poll)

    async def reconcile_loop(self) -> None:
        """Reconcile (and prune old events) every ``reconcile_interval_seconds``; the first
        pass waits one interval, so a restarting process spends no Fivetran requests before
        it serves anything."""
        interval = self.settings.events.reconcile_interval_seconds
        while not self._stopping.is_set():
            await self._idle(interval)
            if self._stopping.is_set():
                break
            try:
                await self.reconcile_once()
            except Exception as exc:
                log.error("reconciliation failed", extra={"error_type": type(exc).__name__})
            try:
                await self.prune_once()
            except Exception as exc:
                log.error("event retention failed", extra={"error_type": type(exc).__name__})

    async def readiness(self) -> tuple[bool, str]:
        """Probe for ``/readyz``: the background loops are running."""
        if not self._tasks or any(t.done() for t in self._tasks):
            return False, "events worker is not running"
        return True, ""

    def start(self) -> None:
        """Start the delivery loop (and the reconciliation loop when enabled)."""
        if self._tasks:
            return
        self._stopping.clear()
        self._tasks = [asyncio.create_task(self.delivery_loop(), name="pbf-events-delivery")]
        if self.reconcile_enabled and self.reconciler is not None:
            self._tasks.append(
                asyncio.create_task(self.reconcile_loop(), name="pbf-events-reconcile")
            )

    async def stop(self) -> None:
        """Stop the loops; in-flight deliveries get a grace period, then are cancelled (their
        leases expire and another worker delivers them)."""
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            try:
                await asyncio.wait_for(task, timeout=15)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
