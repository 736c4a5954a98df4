"""Fleet operation: bring the platform schema policy onto existing connections.

``pbf-headless onboarding apply-schema-policy`` (:mod:`app.cli.onboarding`) runs
:func:`apply_schema_policy`. For every selected connection, in id order:

1. ``GET /v1/connections/{id}/schemas`` (the current schema config at Fivetran);
2. :func:`app.connections.schema_policy.fleet_patch` — what is out of policy (a too
   permissive ``schema_change_handling``, enabled blocked tables, unhashed hashed columns);
3. ``PATCH /v1/connections/{id}/schemas`` with it, only when it is not empty.

Selection: connections that exist at Fivetran (a Fivetran id, not deleted), optionally only
those of some end-users (external ids), services or connection ids.

Every connection gets one :class:`ConnectionResult` — ``updated`` (with what changed),
``unchanged``, ``would_update`` (dry run) or ``failed`` (Fivetran's status, code and message;
a connection whose schema was never captured fails with ``NotFound_SchemaConfig``) — handed to
``on_result`` as soon as it is known. The CLI appends each to a JSON-lines report; ``--resume``
skips the connections that report already has as done, so an interrupted run continues where
it stopped and a rerun retries only the failures. The operation is also idempotent on its
own: a connection already under the policy costs one GET and no PATCH.

Rate: every request goes through the Fivetran client, hence through its budgets — hourly and
per second (:mod:`app.fivetran.budget`, shared through Redis across replicas) — and its
429 handling (waits ``Retry-After`` and retries). ``concurrency`` only bounds how many
connections are in flight; the per-second budget sets the pace. Nothing is written to our
database except one audit record per run (``connection.schema_policy_apply``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import audit
from app.config import SchemaPolicy
from app.connections import schema_policy, states
from app.connections.models import Connection
from app.end_users.models import EndUser
from app.fivetran.client import FivetranClient, counting_requests
from app.fivetran.errors import FivetranError

UPDATED = "updated"
UNCHANGED = "unchanged"
WOULD_UPDATE = "would_update"
FAILED = "failed"
#: Outcomes a resumed run does not redo.
DONE = frozenset({UPDATED, UNCHANGED})


@dataclass(frozen=True)
class FleetSelection:
    """Which connections the operation touches (empty lists: no filter on that)."""

    end_users: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    connection_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    connection_id: str
    fivetran_connection_id: str
    end_user: str
    service: str


@dataclass
class ConnectionResult:
    """One connection's outcome (a line of the report)."""

    connection_id: str
    end_user: str
    service: str
    fivetran_connection_id: str
    outcome: str
    changes: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    requests: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FleetSummary:
    selected: int = 0
    skipped_done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.counts.get(FAILED, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "skipped_done": self.skipped_done,
            "counts": dict(self.counts),
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
        }


async def select_targets(session: AsyncSession, selection: FleetSelection) -> list[Target]:
    """The connections to bring under the policy, in id order (stable across resumes)."""
    stmt = (
        select(
            Connection.id,
            Connection.fivetran_connection_id,
            EndUser.external_id,
            Connection.service,
        )
        .join(EndUser, EndUser.id == Connection.end_user_id)
        .where(
            Connection.fivetran_connection_id.is_not(None),
            Connection.state != states.DELETED,
            Connection.deleted_at.is_(None),
        )
        .order_by(Connection.id)
    )
    if selection.end_users:
        stmt = stmt.where(EndUser.external_id.in_(selection.end_users))
    if selection.services:
        stmt = stmt.where(Connection.service.in_(selection.services))
    if selection.connection_ids:
        stmt = stmt.where(Connection.id.in_(selection.connection_ids))
    rows = (await session.execute(stmt)).all()
    return [Target(r[0], r[1] or "", r[2], r[3]) for r in rows]


async def apply_to_connection(
    client: FivetranClient, policy: SchemaPolicy, target: Target, *, dry_run: bool = False
) -> ConnectionResult:
    """Bring one connection under the policy (see the module docstring); never raises for a
    Fivetran error — it becomes a ``failed`` result."""
    result = ConnectionResult(
        target.connection_id,
        target.end_user,
        target.service,
        target.fivetran_connection_id,
        FAILED,
    )
    with counting_requests() as sent:
        try:
            current = await client.get_schema_config(target.fivetran_connection_id)
            body = schema_policy.fleet_patch(policy, current or {})
            result.changes = schema_policy.summarize_patch(body)
            if not body:
                result.outcome = UNCHANGED
            elif dry_run:
                result.outcome = WOULD_UPDATE
            else:
                await client.update_schema_config(target.fivetran_connection_id, body)
                result.outcome = UPDATED
        except FivetranError as exc:
            result.error = {
                "status": exc.status,
                "code": exc.code,
                "message": exc.message,
            }
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                result.error["retry_after"] = retry_after
    result.requests = sent[0]
    return result


async def apply_schema_policy(
    maker: async_sessionmaker[AsyncSession],
    client: FivetranClient,
    policy: SchemaPolicy,
    selection: FleetSelection = FleetSelection(),
    *,
    done: Iterable[str] = (),
    concurrency: int = 16,
    dry_run: bool = False,
    on_result: Callable[[ConnectionResult], None] = lambda r: None,
    clock: Callable[[], float] = time.monotonic,
) -> FleetSummary:
    """Apply ``policy`` to the selected connections, skipping the ids in ``done`` (a previous
    run's finished ones); ``on_result`` sees each result as soon as it is known."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    async with maker() as session:
        targets = await select_targets(session, selection)
    finished = set(done)
    summary = FleetSummary(selected=len(targets))
    todo = [t for t in targets if t.connection_id not in finished]
    summary.skipped_done = len(targets) - len(todo)
    queue: asyncio.Queue[Target] = asyncio.Queue()
    for t in todo:
        queue.put_nowait(t)
    started = clock()

    async def worker() -> None:
        while True:
            try:
                target = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            result = await apply_to_connection(client, policy, target, dry_run=dry_run)
            summary.counts[result.outcome] = summary.counts.get(result.outcome, 0) + 1
            summary.requests += result.requests
            on_result(result)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(todo)) or 1)))
    summary.seconds = clock() - started
    if not dry_run:
        async with maker() as session, session.begin():
            await audit.record(
                session,
                action="connection.schema_policy_apply",
                target_type="schema_policy",
                target_id="fleet",
                details={
                    "policy": schema_policy.describe(policy),
                    "selection": asdict(selection),
                    **summary.as_dict(),
                },
            )
    return summary
