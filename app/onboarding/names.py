"""Deterministic, collision-safe Fivetran names (groups and destination schemas).

Fivetran names allow letters, digits and underscores and start with a letter or an
underscore. End-user ids are free text (``a-b``, ``A.B``, ``a_b``), so a readable slug alone
would collide; every slug therefore ends with 8 hex digits of SHA-256 of the *exact*
external id: ``a-b`` → ``a_b_1b6b8e2f``, ``a_b`` → ``a_b_0f5c3ad1``. The same id always
yields the same name, which is what makes a retried create find what it may have created.
Eight digits can still collide among many ids sharing a long prefix: an end-user whose slug
is already a live one's gets 12 digits instead (``end_users._free_slug``).
"""

from __future__ import annotations

import hashlib
import re

_NON_WORD = re.compile(r"[^a-z0-9]+")
_SLUG_BASE_LEN = 24


def end_user_slug(external_id: str, *, digest_chars: int = 8) -> str:
    """Readable, Fivetran-safe and unique per external id (≤ 33 chars; ≤ 37 with the
    12-digit digest used when the 8-digit slug is already another end-user's)."""
    digest = hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:digest_chars]
    base = _NON_WORD.sub("_", external_id.lower()).strip("_")[:_SLUG_BASE_LEN].rstrip("_")
    if not base or not base[0].isalpha():
        base = "u_" + base if base else "u"
    return f"{base}_{digest}"


def _with_slot(name: str, slot: int) -> str:
    return name if slot <= 1 else f"{name}_{slot}"


def schema_name(strategy: str, *, slug: str, service: str, slot: int) -> str:
    """Destination schema of a connection (ARCHITECTURE §6).

    ``per_end_user`` → ``<service>``; ``shared`` → ``<end_user>_<service>``;
    ``per_service`` → ``<end_user>``; a suffix ``_<slot>`` from the second connection of the
    same service on.
    """
    if strategy == "per_end_user":
        # A schema name must start with a letter or underscore (``15five`` → ``_15five``).
        return _with_slot(service if not service[:1].isdigit() else f"_{service}", slot)
    if strategy == "shared":
        return _with_slot(f"{slug}_{service}", slot)
    if strategy == "per_service":
        return _with_slot(slug, slot)
    raise ValueError(f"unknown group strategy {strategy!r}")


def end_user_group_name(slug: str) -> str:
    """Name of the dedicated Fivetran group of one end-user (``per_end_user``)."""
    return f"eu_{slug}"


def service_group_name(service: str) -> str:
    """Name of the Fivetran group of one connector type (``per_service``)."""
    return f"svc_{service}"


SHARED_GROUP_NAME = "pbf_shared"
