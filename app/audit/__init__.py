"""Audit trail: who did what to which end-user, connection or key, when, from where.

Append-only: :func:`record` is the one writer (services call it in their own transaction,
so an audited change and its record commit together); nothing updates or deletes a record
except the retention purge (:func:`purge_expired`). Who: the API key of the request (set by
the auth dependency), the CLI, or ``system`` (workers, resume). Listed by ``GET /v1/audit``
(admin) and exported as JSON lines by ``pbf-headless audit export``.
"""

from app.audit.service import (
    Actor,
    list_records,
    purge_expired,
    record,
    record_as_dict,
    set_actor,
)

__all__ = ["Actor", "list_records", "purge_expired", "record", "record_as_dict", "set_actor"]
