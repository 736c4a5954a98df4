"""The outbound event kinds (ARCHITECTURE §3, contract) and the Fivetran webhook events."""

from __future__ import annotations

EVENT_KINDS: tuple[str, ...] = (
    "connection.created",
    "connection.needs_configuration",
    "connection.connected",
    "connection.setup_failed",
    "connection.broken",
    "connection.paused",
    "connection.resumed",
    "connection.sync_succeeded",
    "connection.sync_failed",
    "connection.deleted",
    "connect_session.completed",
    "connect_session.failed",
    "end_user.group_repaired",
)

#: Fivetran webhook events we subscribe to and act on.
FIVETRAN_WEBHOOK_EVENTS: tuple[str, ...] = (
    "sync_start",
    "sync_end",
    "connection_successful",
    "connection_failure",
    "pause_connector",
    "resume_connector",
    "delete_connector",
)
