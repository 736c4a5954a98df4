"""End-users and their Fivetran groups; offboarding.

Group strategies (``OnboardingSettings.group_strategy``, ARCHITECTURE §6):

* ``per_end_user`` — one group + destination per end-user, named ``eu_<slug>``; the
  destination comes from ``destination_template`` or the end-user's own (request).
* ``shared`` — every end-user in one configured group (``shared_group_id``; in sandbox mode a
  ``pbf_shared`` group is created on demand when none is configured).
* ``per_service`` — one group per connector type (``svc_<service>``), created on demand.

Group creation is retry-safe: names are deterministic, so a create that conflicts or whose
outcome is unknown is resolved by finding the group by name.

Offboarding (``DELETE``) first revokes what the provider lets us revoke and crypto-shreds every
secret of the end-user (no Fivetran involved, so it always completes), then deletes the
Fivetran connections and the dedicated group. Each step is committed as it completes; when
Fivetran is unavailable the end-user stays ``offboarding`` and a retry of the ``DELETE`` or
:func:`app.connections.offboarding.resume_offboarding` (startup, workers) finishes it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller, end_user_prefix_clause
from app.config import Settings
from app.db import new_id, try_insert, utcnow
from app.end_users import group_repair, names
from app.end_users.models import EndUser, ServiceGroup
from app.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from app.fivetran.client import FivetranClient
from app.fivetran.errors import (
    FivetranAmbiguous,
    FivetranConflict,
    FivetranError,
    FivetranInvalidInput,
    FivetranNotFound,
    FivetranServerError,
    FivetranUnavailable,
    fivetran_problem,
)
from app.kit.pagination import decode_cursor, encode_cursor
from app.state import AppState

log = logging.getLogger("pbf.onboarding")

__all__ = ["EndUser", "get_end_user"]

_EXTERNAL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,199}$")

OFFBOARDING = "in_progress"
OFFBOARDED = "completed"


def validate_external_id(external_id: str) -> None:
    if not _EXTERNAL_ID_RE.fullmatch(external_id):  # fullmatch: "$" admits a trailing "\n"
        raise InvalidInput(
            "external_id must be 1-200 characters of letters, digits and . _ : @ + -, "
            "starting with a letter or digit",
            code="invalid_external_id",
            field="external_id",
        )


async def _by_external_id(session: AsyncSession, external_id: str) -> EndUser | None:
    return await session.scalar(select(EndUser).where(EndUser.external_id == external_id))


async def get_end_user(session: AsyncSession, caller: Caller | None, external_id: str) -> EndUser:
    """The live end-user ``external_id``; 404 ``end_user_not_found`` for unknown, deleted
    (or being offboarded) and foreign (outside the key's ``end_user_prefix``) ones."""
    if caller is not None:
        caller.require_end_user(external_id)
    row = await _by_external_id(session, external_id)
    if row is None or row.deleted_at is not None or row.offboarding_state is not None:
        raise NotFound(f"End-user '{external_id}' not found", code="end_user_not_found")
    return row


async def get_end_user_by_id(session: AsyncSession, end_user_id: str) -> EndUser:
    row = await session.get(EndUser, end_user_id)
    if row is None:
        raise NotFound("End-user not found", code="end_user_not_found")
    return row


@dataclass
class DestinationRequest:
    """The end-user's own destination (``PUT`` body ``destination``)."""

    service: str
    time_zone_offset: str
    region: str | None
    config: dict[str, Any]


async def upsert_end_user(
    session: AsyncSession,
    *,
    fivetran: FivetranClient,
    settings: Settings,
    caller: Caller,
    external_id: str,
    name: str | None,
    destination: DestinationRequest | None = None,
) -> tuple[EndUser, bool]:
    """Create or update an end-user and ensure the group its strategy requires.

    Returns ``(end_user, created)``. A deleted end-user comes back as a new one (same
    external id, fresh group); one still being offboarded is a 409.
    """
    validate_external_id(external_id)
    caller.require_end_user(external_id)
    row = await _by_external_id(session, external_id)
    created = False
    now = utcnow()
    if row is not None and row.offboarding_state == OFFBOARDING:
        raise Conflict(
            f"End-user '{external_id}' is being offboarded; retry the DELETE first",
            code="end_user_offboarding",
        )
    if destination is not None and settings.onboarding.group_strategy != "per_end_user":
        raise InvalidInput(
            "A destination can only be given with the per_end_user group strategy",
            code="destination_not_supported",
            field="destination",
        )
    if row is not None and row.deleted_at is not None:
        # Re-onboarding after offboarding: a new internal id, nothing carried over.
        # The tombstone name must stay unique within 200 characters: cut the old id, never
        # the suffix ("#" is not allowed in live external ids, so no live id collides).
        suffix = f"#deleted#{row.id}"
        row.external_id = row.external_id[: 200 - len(suffix)] + suffix
        await session.flush()
        row = None
    # A group deleted at Fivetran is forgotten here and re-created by the ensure step below.
    repaired = (
        await group_repair.forget_missing_groups(
            session,
            row,
            fivetran=fivetran,
            settings=settings,
            destination_given=destination is not None,
        )
        if row is not None
        else []
    )
    if row is None:
        row = EndUser(
            id=new_id("eu"),
            external_id=external_id,
            name=name,
            slug=await _free_slug(session, external_id),
            group_strategy=settings.onboarding.group_strategy,
            owns_group=False,
            destination=_destination_summary(destination),
            created_at=now,
            updated_at=now,
        )
        if not await try_insert(session, row):  # a concurrent PUT of the same id won the race
            raise Conflict(
                f"End-user '{external_id}' is being created concurrently; retry",
                code="concurrent_update",
            )
        created = True
    else:
        if name is not None:
            row.name = name
        if destination is not None and row.fivetran_group_id is None:
            row.destination = _destination_summary(destination)
        elif destination is not None and _destination_summary(destination) != row.destination:
            raise Conflict(
                "The end-user's destination already exists and cannot be replaced",
                code="destination_exists",
            )
        row.updated_at = now
    if row.group_strategy == "per_end_user":
        await _ensure_dedicated_group(
            session, row, destination, fivetran=fivetran, settings=settings
        )
    elif row.group_strategy == "shared":
        row.fivetran_group_id = await shared_group_id(session, fivetran=fivetran, settings=settings)
    await audit.record(
        session,
        action="end_user.create" if created else "end_user.update",
        target_type="end_user",
        target_id=row.id,
        end_user=external_id,
        details={"name_set": name is not None, "destination_set": destination is not None},
    )
    await group_repair.record_repairs(session, row, repaired)
    await session.flush()
    return row, created


async def _free_slug(session: AsyncSession, external_id: str) -> str:
    """The end-user's slug; the longer digest when a live end-user already has the short one
    (names are found by name at Fivetran, so a shared slug would share groups and schemas)."""
    slug = names.end_user_slug(external_id)
    taken = await session.scalar(
        select(EndUser.id)
        .where(
            EndUser.slug == slug,
            EndUser.external_id != external_id,
            EndUser.deleted_at.is_(None),
        )
        .limit(1)
    )
    return names.end_user_slug(external_id, digest_chars=12) if taken else slug


def _destination_summary(destination: DestinationRequest | None) -> dict[str, Any] | None:
    if destination is None:
        return None
    return {"service": destination.service, "region": destination.region, "own": True}


async def _find_group_by_name(client: FivetranClient, name: str) -> str | None:
    for group in await client.list_groups():
        if group.get("name") == name:
            return str(group["id"])
    return None


async def _create_or_find_group(client: FivetranClient, name: str) -> str:
    try:
        group = await client.create_group(name)
        return str(group["id"])
    except (
        FivetranConflict,
        FivetranInvalidInput,
        FivetranAmbiguous,
        FivetranServerError,
        FivetranUnavailable,
    ) as exc:
        # The group may exist (a rolled-back earlier attempt, a duplicate name): find it.
        try:
            found = await _find_group_by_name(client, name)
        except FivetranError as lookup_exc:
            raise fivetran_problem(lookup_exc) from lookup_exc
        if found is not None:
            return found
        raise fivetran_problem(exc) from exc
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc


async def _ensure_dedicated_group(
    session: AsyncSession,
    row: EndUser,
    destination: DestinationRequest | None,
    *,
    fivetran: FivetranClient,
    settings: Settings,
) -> None:
    client = fivetran
    if row.fivetran_group_id is None:
        row.fivetran_group_id = await _create_or_find_group(
            client, names.end_user_group_name(row.slug)
        )
        row.owns_group = True
        await session.flush()
    if row.destination is not None and row.destination.get("ready"):
        return
    template = settings.onboarding.destination_template
    body: dict[str, Any] = {
        "group_id": row.fivetran_group_id,
        "service": destination.service if destination else template.service,
        "time_zone_offset": destination.time_zone_offset
        if destination
        else template.time_zone_offset,
        "config": dict(destination.config if destination else template.config),
        "run_setup_tests": destination is not None,
    }
    region = destination.region if destination else template.region
    if region:
        body["region"] = region
    try:
        await client.create_destination(body)
    except FivetranConflict:
        pass  # it exists already (an earlier attempt): adopt it
    except FivetranError as exc:
        try:
            await client.get_destination(row.fivetran_group_id)
        except FivetranNotFound:
            if exc.status in (400, 422):
                raise InvalidInput(
                    f"Fivetran rejected the destination: {exc.message}",
                    code="invalid_destination",
                    field="destination",
                ) from exc
            raise fivetran_problem(exc) from exc
        except FivetranError as lookup_exc:
            raise fivetran_problem(lookup_exc) from lookup_exc
    summary = dict(row.destination or {"service": body["service"], "region": region})
    summary["ready"] = True
    row.destination = summary


async def shared_group_id(
    session: AsyncSession, *, fivetran: FivetranClient, settings: Settings
) -> str:
    if settings.onboarding.shared_group_id:
        return settings.onboarding.shared_group_id
    if not settings.is_sandbox:
        raise ServiceUnavailable(
            "The shared group strategy needs PBF_ONBOARDING__SHARED_GROUP_ID",
            code="shared_group_not_configured",
        )
    return await _service_group(session, "_shared", names.SHARED_GROUP_NAME, fivetran=fivetran)


async def _service_group(
    session: AsyncSession, key: str, name: str, *, fivetran: FivetranClient
) -> str:
    row = await session.get(ServiceGroup, key)
    if row is not None:
        return row.fivetran_group_id
    group_id = await _create_or_find_group(fivetran, name)
    # False: created concurrently under the same deterministic name.
    await try_insert(
        session, ServiceGroup(key=key, fivetran_group_id=group_id, created_at=utcnow())
    )
    return group_id


async def group_for_connection(
    session: AsyncSession, app_state: AppState, end_user: EndUser, service: str
) -> str:
    """The Fivetran group a new connection of ``service`` goes to (created on demand).

    Takes the application state because app.connections calls it so; it hands on only the
    Fivetran client and the settings.
    """
    fivetran, settings = app_state.fivetran, app_state.settings
    if end_user.group_strategy == "per_service":
        return await _service_group(
            session,
            f"service:{service}",
            names.service_group_name(service),
            fivetran=fivetran,
        )
    if end_user.group_strategy == "shared":
        if end_user.fivetran_group_id is None:
            end_user.fivetran_group_id = await shared_group_id(
                session, fivetran=fivetran, settings=settings
            )
        return end_user.fivetran_group_id
    if end_user.fivetran_group_id is None or not (end_user.destination or {}).get("ready"):
        await _ensure_dedicated_group(session, end_user, None, fivetran=fivetran, settings=settings)
    assert end_user.fivetran_group_id is not None
    return end_user.fivetran_group_id


# --- listing -----------------------------------------------------------------------------


async def list_end_users(
    session: AsyncSession, *, caller: Caller, cursor: str | None, limit: int
) -> tuple[list[EndUser], str | None]:
    after = decode_cursor(cursor, "after", str)
    stmt = select(EndUser).where(EndUser.deleted_at.is_(None)).order_by(EndUser.external_id)
    if caller.end_user_prefix:
        stmt = stmt.where(end_user_prefix_clause(EndUser.external_id, caller.end_user_prefix))
    if after is not None:
        stmt = stmt.where(EndUser.external_id > after)
    rows = list((await session.scalars(stmt.limit(limit + 1))).all())
    next_cursor = encode_cursor("after", rows[limit - 1].external_id) if len(rows) > limit else None
    return rows[:limit], next_cursor


# --- offboarding -------------------------------------------------------------------------


async def start_offboarding(session: AsyncSession, caller: Caller, external_id: str) -> EndUser:
    """Mark the end-user as being offboarded (also accepted again to resume)."""
    caller.require_end_user(external_id)
    row = await _by_external_id(session, external_id)
    if row is None or row.deleted_at is not None:
        raise NotFound(f"End-user '{external_id}' not found", code="end_user_not_found")
    if row.offboarding_state is None:
        row.offboarding_state = OFFBOARDING
        row.updated_at = utcnow()
        await audit.record(
            session,
            action="end_user.delete",
            target_type="end_user",
            target_id=row.id,
            end_user=external_id,
        )
        await session.flush()
    return row
