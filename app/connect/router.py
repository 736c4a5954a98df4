"""Connect sessions (``/v1/connect-sessions``) and the browser leg (``/connect``, callback)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from app.config import Settings
from app.connect import callback, configure, oauth1, outcomes, pages, service
from app.connect.origins import check_request_origin
from app.connect.schemas import (
    ConfigureIn,
    ConnectionOptions,
    ConnectSessionCreate,
    ConnectSessionCreated,
    ConnectSessionOut,
    ConnectSessionView,
    ReauthorizeIn,
)
from app.connections.dependencies import ReadConnection, WriteConnection
from app.connections.schemas import ConnectionOut
from app.dependencies import ReadCaller, SessionDep, StateDep, WriteCaller
from app.errors import InvalidInput
from app.kit.problems import API_PROBLEMS

router = APIRouter(tags=["connect sessions"])

_PROBLEMS = {
    404: {"description": "Unknown or foreign end-user, unknown source or session."},
    409: {"description": "Idempotency-Key reused with a different body."},
    422: {"description": "Invalid field; `field` names it (e.g. `return_to`, `config.shop`)."},
}
_BROWSER = {"description": "Static HTML page (never a redirect from request data)."}


@router.post(
    "/v1/connect-sessions",
    status_code=201,
    response_model=ConnectSessionCreated,
    summary="Create a connect session (OAuth onboarding of one source)",
    responses=_PROBLEMS,  # type: ignore[arg-type]
)
async def create_connect_session(
    body: ConnectSessionCreate,
    state: StateDep,
    session: SessionDep,
    caller: WriteCaller,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response | ConnectSessionCreated:
    """Mint a single-use `connect_url` for the end-user's browser.

    Send the browser there with a top-level form POST from an allow-listed origin, or a plain
    link (it shows a confirmation page naming the end-user and the source). After consent the
    browser comes back to `return_to` with `session_id`, `status` (`connected` | `error`) and
    `connection_id` or an `error` code. With `connection_id` the session re-authorizes that
    existing connection.
    """
    return await service.create_connect_session_idempotent(
        session,
        state,
        caller=caller,
        body=body,
        idempotency_key=idempotency_key,
    )


@router.get(
    "/v1/connect-sessions/{session_id}",
    response_model=ConnectSessionView,
    summary="Read a connect session's outcome",
    responses={404: {"description": "Unknown session (or outside the key's end-users)."}},
)
async def get_connect_session(
    session_id: str, session: SessionDep, caller: ReadCaller
) -> ConnectSessionView:
    """`pending | completed | failed | expired`, the connection and an error code, for
    callers that poll instead of reading the redirect."""
    row = await service.get_connect_session(session, caller=caller, session_id=session_id)
    return service.session_out(row)


@router.get(
    "/connect/{token}",
    summary="Browser: confirmation page before starting the OAuth flow",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}, 400: _BROWSER},
)
async def connect_confirmation(
    token: str, request: Request, state: StateDep, session: SessionDep
) -> Response:
    """Shows which end-user and source are being connected; the button POSTs back here.
    Nothing is consumed by this GET."""
    ctx = pages.page_context(request)
    info = await service.confirmation_for(session, state, token=token)
    if info is None:
        row = await service.session_by_token(session, token)
        return pages.error_page(
            "link_invalid", ctx=ctx, back=outcomes.back_link(row, "link_invalid")
        )
    return pages.confirmation_page(
        ctx=ctx,
        action=f"/connect/{token}",
        source=info.source,
        end_user=info.end_user,
        expires_at=info.expires_at,
        reauthorization=info.reauthorization,
    )


@router.post(
    "/connect/{token}",
    summary="Browser: start the OAuth flow (303 to the provider)",
    status_code=303,
    response_class=Response,
    responses={
        303: {"description": "To the provider's consent page."},
        400: _BROWSER,
        403: _BROWSER,
    },
)
async def connect_start(
    token: str, request: Request, state: StateDep, session: SessionDep
) -> Response:
    """Top-level form POST from an allow-listed `Origin`, or from the confirmation page
    itself (`Sec-Fetch-Site: same-origin`). Consumes the single-use start
    token, sets the `__Host-oauth_flow` browser-binding cookie and redirects to the provider."""
    if not check_request_origin(
        state.settings,
        request.headers.get("origin"),
        request.headers.get("sec-fetch-site"),
    ):
        row = await service.session_by_token(session, token)
        back = outcomes.back_link(row, "origin_not_allowed")
        return pages.error_page(
            "origin_not_allowed", 403, ctx=pages.page_context(request), back=back
        )
    result = await service.start_flow(
        session, state, token=token, oauth1_start=oauth1.start_for_session
    )
    return _browser_response(request, state.settings, result)


@router.get(
    "/oauth/callback/{provider_key}",
    summary="Browser: OAuth redirect target of a provider",
    status_code=303,
    response_class=Response,
    responses={303: {"description": "To the stored return_to."}, 400: _BROWSER, 404: _BROWSER},
)
async def oauth_callback(
    provider_key: str, request: Request, state: StateDep, session: SessionDep
) -> Response:
    """Verifies state, browser binding and `iss`, exchanges the code, stores the tokens
    encrypted, creates or re-authorizes the connection, then `303` to `return_to`. For an
    OAuth 1.0a provider (X / Twitter): `oauth_token` + `oauth_verifier` (or `denied`)."""
    provider1 = oauth1.provider_of(state, provider_key)
    if provider1 is not None:  # OAuth 1.0a: oauth_token + oauth_verifier
        result = await oauth1.handle_callback(
            session,
            state,
            provider=provider1,
            query=request.query_params.multi_items(),
            binding_cookie=request.cookies.get(service.BINDING_COOKIE),
        )
        return _browser_response(request, state.settings, result)
    result = await callback.handle_callback(
        session,
        state,
        provider_key=provider_key,
        query=request.query_params.multi_items(),
        binding_cookie=request.cookies.get(service.BINDING_COOKIE),
    )
    return _browser_response(request, state.settings, result)


def _browser_response(
    request: Request, settings: Settings, result: outcomes.BrowserResult
) -> Response:
    if result.page is not None:
        response: Response = pages.error_page(
            result.page, result.status_code, ctx=pages.page_context(request), back=result.back
        )
    else:
        assert result.location is not None
        response = pages.see_other(result.location)
    if result.set_binding_cookie is not None:
        response.set_cookie(
            service.BINDING_COOKIE,
            result.set_binding_cookie,
            max_age=settings.connect.flow_ttl_seconds,
            path="/",
            secure=True,
            httponly=True,
            samesite="lax",
        )
    elif result.clear_binding_cookie:
        response.delete_cookie(
            service.BINDING_COOKIE, path="/", secure=True, httponly=True, samesite="lax"
        )
    return response


#: ``POST /v1/connections/{id}/reauthorize``: documented with the connection routes.
reauthorize_router = APIRouter(prefix="/v1", responses=API_PROBLEMS)


@reauthorize_router.post(
    "/connections/{connection_id}/reauthorize",
    response_model=ConnectSessionOut,
    status_code=201,
    tags=["connections"],
)
async def reauthorize_connection(target: WriteConnection, body: ReauthorizeIn) -> ConnectSessionOut:
    """A connect session that re-authorizes this (OAuth) connection; send the end-user to
    its ``connect_url``."""
    conn, end_user = await target.load()
    if conn.auth_method not in ("oauth2", "oauth1"):
        raise InvalidInput(
            "Only OAuth connections are re-authorized; PATCH the credentials instead",
            code="not_an_oauth_connection",
            field="connection_id",
        )
    created = await service.create_connect_session(
        target.session,
        target.state,
        caller=target.caller,
        end_user=end_user.external_id,
        service=conn.service,
        return_to=body.return_to,
        connection_id=conn.id,
    )
    return ConnectSessionOut(
        id=created.row.id,
        connect_url=created.connect_url,
        expires_at=created.row.expires_at,
        status=created.row.status,
        connection_id=conn.id,
    )


_PICKER_PROBLEMS: dict[int | str, dict[str, Any]] = {
    409: {
        "description": "Wrong state (`invalid_connection_state`), a source without a choice "
        "(`not_configurable`), a token the provider refused (`needs_reauth`), an expired token "
        "Fivetran owns (`access_token_expired`), a configure already running "
        "(`configuration_in_progress`)."
    },
    502: {"description": "The provider's list call failed (`provider_list_failed`)."},
}


@reauthorize_router.get(
    "/connections/{connection_id}/options",
    response_model=ConnectionOptions,
    tags=["connections"],
    responses=_PICKER_PROBLEMS,
)
async def connection_options(target: ReadConnection) -> ConnectionOptions:
    """The choices of a connection's post-consent configuration (`{field: [{value, label}]}`:
    ad accounts, customer ids, properties, sites), fetched from the provider with the
    connection's access token (refreshed first when it has expired and we still own the grant).
    For a connection in `needs_configuration`, or one that exists at Fivetran (to change the
    selection)."""
    conn, _ = await target.load()
    return await configure.connection_options(target.session, target.state, conn)


@reauthorize_router.post(
    "/connections/{connection_id}/configure",
    response_model=ConnectionOut,
    tags=["connections"],
    responses=_PICKER_PROBLEMS,
)
async def configure_connection(
    target: WriteConnection,
    body: ConfigureIn,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """Submit the end-user's choice. It is checked against the choices the provider lists now
    (422 naming `config.<field>`). A `needs_configuration` connection is then created at
    Fivetran with the choice in its `config` (and ends `connected` or `setup_failed`);
    `Idempotency-Key` makes a retry safe. On a connection that exists at Fivetran the new
    selection is PATCHed onto its config."""
    conn, end_user = await target.load()
    return await configure.configure_connection(
        target.session,
        target.state,
        caller=target.caller,
        conn=conn,
        end_user_external_id=end_user.external_id,
        body=body,
        idempotency_key=idempotency_key,
    )
