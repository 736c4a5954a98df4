"""Dependencies of the ``/v1/connections/{connection_id}/…`` endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import Caller
from app.connections import service as conn_service
from app.connections.models import Connection
from app.dependencies import ReadCaller, SessionDep, WriteCaller
from app.end_users.models import EndUser
from app.state import AppState, app_state


@dataclass(frozen=True)
class ConnectionRef:
    """The connection named in the path, with what an endpoint needs to act on it.

    The lookup is deferred to :meth:`load`, called from the endpoint body: FastAPI validates
    the rest of the request first, so invalid input stays a 422 even for an unknown id.
    """

    session: AsyncSession
    state: AppState
    caller: Caller
    connection_id: str

    async def load(self) -> tuple[Connection, EndUser]:
        """The live connection and its end-user; 404 ``connection_not_found`` when unknown,
        deleted or outside the caller's end-users."""
        return await conn_service.get_connection(self.session, self.caller, self.connection_id)


# The app state comes from the request (not ``StateDep``): one dependency node less per route.
async def _read_ref(
    connection_id: str, request: Request, session: SessionDep, caller: ReadCaller
) -> ConnectionRef:
    return ConnectionRef(session, app_state(request.app), caller, connection_id)


async def _write_ref(
    connection_id: str, request: Request, session: SessionDep, caller: WriteCaller
) -> ConnectionRef:
    return ConnectionRef(session, app_state(request.app), caller, connection_id)


#: The path's connection, for a caller with the ``read`` scope.
ReadConnection = Annotated[ConnectionRef, Depends(_read_ref)]
#: The path's connection, for a caller with the ``write`` scope.
WriteConnection = Annotated[ConnectionRef, Depends(_write_ref)]
