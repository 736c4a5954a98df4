"""Repair of an end-user whose Fivetran group is gone (deleted by hand at Fivetran, or a
sandbox simulator that lost its state).

``PUT /v1/end-users/{id}`` calls :func:`forget_missing_groups` before it ensures the group the
strategy requires: each group we rely on is looked up at Fivetran (one ``GET /v1/groups/{id}``
each; only a 404 counts — an outage skips the repair, never fails the PUT), and one that is
gone is forgotten, so the normal "ensure" path re-resolves it —
creates (or finds by its deterministic name) the group and, for ``per_end_user``, its
destination. :func:`record_repairs` then emits ``end_user.group_repaired`` (old and new group
id) and logs it.

* ``per_end_user``: the end-user's own group. A destination of its own (given in an earlier
  ``PUT``) went with the group and cannot be rebuilt without its configuration: the repair
  then needs the ``destination`` again (409 ``end_user_destination_missing``).
* ``shared``: the sandbox's on-demand ``pbf_shared`` group is re-created; a configured
  ``shared_group_id`` that is gone is an operator problem (503 ``shared_group_missing``).
* ``per_service``: the cached per-service groups that are gone are forgotten and re-created
  on demand by the next connection of that service.

Creating a connection in a group that is gone answers 409 ``end_user_group_missing``
(:func:`group_missing_error`) instead of a gateway error; the connection stays ``creating``
without a group, so a retry or ``onboarding resume`` after the repair finishes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.end_users.models import EndUser, ServiceGroup
from app.errors import Conflict, ServiceUnavailable
from app.events.outbox import emit
from app.fivetran.client import FivetranClient
from app.fivetran.errors import FivetranError, FivetranNotFound

log = logging.getLogger("pbf.onboarding.group_repair")

GROUP_REPAIRED = "end_user.group_repaired"


@dataclass
class MissingGroup:
    """A group the end-user relied on that Fivetran no longer has."""

    group_id: str
    scope: str  # "end_user", "shared" or "service:<service>"


def group_missing_error(end_user_external_id: str | None = None) -> Conflict:
    who = f"End-user '{end_user_external_id}'" if end_user_external_id else "The end-user"
    return Conflict(
        f"{who}'s Fivetran group no longer exists at Fivetran (deleted there?): repair it "
        "with PUT /v1/end-users/{external_id}, then retry",
        code="end_user_group_missing",
    )


async def _is_gone(client: FivetranClient, group_id: str) -> bool:
    """True only on a 404: when Fivetran cannot answer, the group is taken as present (the
    check is a repair opportunity, it must not make a PUT fail that would otherwise work)."""
    try:
        await client.get_group(group_id)
    except FivetranNotFound:
        return True
    except FivetranError as exc:
        log.warning(
            "could not check the end-user's group at Fivetran",
            extra={"group_id": group_id, "fivetran_status": exc.status},
        )
    return False


async def forget_missing_groups(
    session: AsyncSession,
    row: EndUser,
    *,
    fivetran: FivetranClient,
    settings: Settings,
    destination_given: bool,
) -> list[MissingGroup]:
    """Forget the groups of ``row``'s strategy that are gone at Fivetran (see module doc)."""
    client = fivetran
    missing: list[MissingGroup] = []
    if row.group_strategy == "per_end_user":
        if row.fivetran_group_id is None or not await _is_gone(client, row.fivetran_group_id):
            return missing
        own = bool((row.destination or {}).get("own"))
        if own and not destination_given:
            raise Conflict(
                f"End-user '{row.external_id}''s group and its own destination were deleted "
                "at Fivetran: PUT the end-user again with its destination",
                code="end_user_destination_missing",
                field="destination",
            )
        missing.append(MissingGroup(row.fivetran_group_id, "end_user"))
        row.fivetran_group_id = None
        row.owns_group = False
        row.destination = None  # rebuilt by the ensure step (template or the given one)
        return missing
    if row.group_strategy == "shared":
        if settings.onboarding.shared_group_id:
            gid = settings.onboarding.shared_group_id
            if await _is_gone(client, gid):
                raise ServiceUnavailable(
                    f"The configured shared group '{gid}' does not exist at Fivetran: fix "
                    "PBF_ONBOARDING__SHARED_GROUP_ID",
                    code="shared_group_missing",
                )
            return missing
        keys = ["_shared"]
    else:
        keys = list(
            (
                await session.scalars(
                    select(ServiceGroup.key).where(ServiceGroup.key.like("service:%"))
                )
            ).all()
        )
    for key in keys:
        cached = await session.get(ServiceGroup, key)
        if cached is None or not await _is_gone(client, cached.fivetran_group_id):
            continue
        missing.append(
            MissingGroup(cached.fivetran_group_id, "shared" if key == "_shared" else key)
        )
        await session.delete(cached)
    if missing:
        if row.group_strategy == "shared":
            row.fivetran_group_id = None
        await session.flush()
    return missing


async def record_repairs(session: AsyncSession, row: EndUser, missing: list[MissingGroup]) -> None:
    """Emit ``end_user.group_repaired`` per repaired group (same transaction) and log it."""
    for item in missing:
        new_group = row.fivetran_group_id if item.scope in ("end_user", "shared") else None
        data = {
            "group_strategy": row.group_strategy,
            "scope": item.scope,
            "missing_group_id": item.group_id,
            "group_id": new_group,
        }
        await emit(session, kind=GROUP_REPAIRED, data=data, end_user_external_id=row.external_id)
        log.warning("end-user group was gone at Fivetran and was repaired", extra=data)
