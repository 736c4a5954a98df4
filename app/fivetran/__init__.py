"""Fivetran REST API: the async client, payload builders and the per-service index.

Public surface: :class:`FivetranClient` (``app.state.fivetran``), :mod:`app.fivetran.errors`,
:mod:`app.fivetran.payloads`, :mod:`app.fivetran.index`.
"""

from app.fivetran.client import FivetranClient

__all__ = ["FivetranClient"]
