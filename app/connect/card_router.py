"""Endpoints of Fivetran's Connect Card (:mod:`app.connect.card`): the caller's
``POST /v1/connections/{id}/connect-card`` and the browser's return from the card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.connect import card, pages
from app.connect.schemas import ConnectCardIn, ConnectCardOut
from app.connections.dependencies import WriteConnection
from app.dependencies import SessionDep, StateDep
from app.kit.problems import API_PROBLEMS

#: ``POST /v1/connections/{id}/connect-card``: documented with the connection routes.
router = APIRouter(prefix="/v1", responses=API_PROBLEMS)
#: The browser's return from the card (HTML pages, never JSON).
browser_router = APIRouter(tags=["connect sessions"])

_BROWSER = {"description": "Static HTML page (never a redirect from request data)."}


@router.post(
    "/connections/{connection_id}/connect-card",
    response_model=ConnectCardOut,
    status_code=201,
    tags=["connections"],
    responses={
        409: {"description": "The connection is not at Fivetran yet, or paused."},
        422: {"description": "Invalid `return_to`, or not a connect_card connection."},
    },
)
async def create_connect_card(target: WriteConnection, body: ConnectCardIn) -> ConnectCardOut:
    """Fivetran's Connect Card for a `connect_card` connection (state `authorizing`, or
    `setup_failed`/`broken`/`connected` to authorize it again). Send the end-user's browser
    to `connect_card_url`; after the setup Fivetran sends it back to us and we send it on to
    `return_to` with `status` (`connected` | `error`), `connection_id` and an `error` code.
    Only the newest card of a connection is accepted back, once, until `expires_at`."""
    conn, end_user = await target.load()
    issued = await card.issue_card(
        target.session,
        target.state,
        caller=target.caller,
        conn=conn,
        end_user=end_user,
        return_to=body.return_to,
        hide_setup_guide=body.hide_setup_guide,
    )
    return ConnectCardOut(
        connection_id=issued.connection_id,
        connect_card_url=issued.connect_card_url,
        expires_at=issued.expires_at,
    )


@browser_router.get(
    card.RETURN_PATH + "{token}",
    summary="Browser: return from Fivetran's Connect Card (303 to return_to)",
    status_code=303,
    response_class=Response,
    responses={303: {"description": "To the stored return_to."}, 400: _BROWSER, 404: _BROWSER},
)
async def connect_card_return(
    token: str,
    request: Request,
    state: StateDep,
    session: SessionDep,
    id: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Verifies the single-use token of the card (and that `id`, when Fivetran adds it, is
    its connection), reads the connection at Fivetran, maps its setup state, then `303` to
    `return_to`. Unknown, used, expired or foreign tokens get a static page; nothing changes."""
    result = await card.handle_return(session, state, token=token, fivetran_id=id)
    if result.page is not None:
        return pages.error_page(
            result.page, result.status_code, ctx=pages.page_context(request), back=result.back
        )
    assert result.location is not None
    return pages.see_other(result.location)
