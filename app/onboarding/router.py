"""HTTP endpoints of onboarding: end-users, sources, connections, payload preview."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from app.dependencies import ReadCaller, SessionDep, WriteCaller
from app.onboarding import connection_actions as actions
from app.onboarding import connections as conn_service
from app.onboarding import end_users as end_user_service
from app.onboarding import idempotency
from app.onboarding.dependencies import ReadConnection, WriteConnection
from app.onboarding.end_users import DestinationRequest
from app.onboarding.schemas import (
    ActionOut,
    AuthMethod,
    CertificateIn,
    ConnectionCreate,
    ConnectionOut,
    ConnectionPage,
    ConnectionPatch,
    ConnectionState,
    ConnectSessionOut,
    EndUserOut,
    EndUserPage,
    EndUserPut,
    FingerprintIn,
    PreviewIn,
    PreviewOut,
    ReauthorizeIn,
    ResyncIn,
    SchemaOut,
    SchemaPatch,
    SourceList,
    SourceOut,
    SshPublicKeyOut,
    SyncIn,
    TestIn,
)
from app.onboarding.sources import get_source, list_sources
from app.pagination import decode_cursor, encode_cursor


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {}}}


#: Problem-details responses every onboarding route may give (RFC 9457, stable ``code``).
PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or invalid API key."),
    403: _problem("The API key lacks the scope."),
    404: _problem("Unknown, deleted or foreign (outside the key's end-users) resource."),
    409: _problem("Conflicting state (idempotency key reused, offboarding in progress, …)."),
    413: _problem("Request body too large."),
    422: _problem("Invalid input; ``field`` names the offending field."),
    429: _problem("Fivetran rate limit; honour ``Retry-After``."),
    503: _problem("Fivetran unavailable; retry (with the same Idempotency-Key)."),
}

router = APIRouter(prefix="/v1", responses=PROBLEMS)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
Limit = Annotated[int, Query(ge=1, le=1000)]


# --- end-users ---------------------------------------------------------------------------


@router.put(
    "/end-users/{external_id}",
    response_model=EndUserOut,
    tags=["end-users"],
    responses={200: {"description": "Updated"}, 201: {"description": "Created"}},
)
async def put_end_user(
    external_id: str,
    body: EndUserPut,
    request: Request,
    response: Response,
    session: SessionDep,
    caller: WriteCaller,
) -> EndUserOut:
    """Create or update an end-user (idempotent) and ensure the Fivetran group (and
    destination) its group strategy requires."""
    destination = (
        DestinationRequest(
            service=body.destination.service,
            time_zone_offset=body.destination.time_zone_offset,
            region=body.destination.region,
            config=body.destination.config,
        )
        if body.destination
        else None
    )
    row, created = await end_user_service.upsert_end_user(
        session,
        request.app.state,
        caller=caller,
        external_id=external_id,
        name=body.name,
        destination=destination,
    )
    response.status_code = 201 if created else 200
    return EndUserOut.of(row)


@router.get("/end-users/{external_id}", response_model=EndUserOut, tags=["end-users"])
async def get_end_user(external_id: str, session: SessionDep, caller: ReadCaller) -> EndUserOut:
    """One end-user (404 for unknown, deleted and foreign ones)."""
    return EndUserOut.of(await end_user_service.get_end_user(session, caller, external_id))


@router.get("/end-users", response_model=EndUserPage, tags=["end-users"])
async def list_end_users(
    session: SessionDep,
    caller: ReadCaller,
    cursor: str | None = None,
    limit: Limit = 100,
) -> EndUserPage:
    """End-users visible to this key, by external id (cursor-paginated)."""
    rows, next_cursor = await end_user_service.list_end_users(
        session, caller=caller, cursor=cursor, limit=limit
    )
    return EndUserPage(items=[EndUserOut.of(r) for r in rows], next_cursor=next_cursor)


@router.delete(
    "/end-users/{external_id}",
    status_code=204,
    tags=["end-users"],
    responses={202: {"model": EndUserOut, "description": "Offboarding continues later"}},
)
async def delete_end_user(
    external_id: str, request: Request, session: SessionDep, caller: WriteCaller
) -> Response:
    """Offboard: revoke tokens where possible, crypto-shred every secret, delete the
    Fivetran connections and the dedicated group. ``202`` with the state when Fivetran is
    unavailable (a retry of this DELETE, or the background resume, finishes it)."""
    row = await end_user_service.start_offboarding(session, caller, external_id)
    done = await end_user_service.run_offboarding(session, request.app.state, row)
    if done:
        return Response(status_code=204)
    return JSONResponse(EndUserOut.of(row).model_dump(mode="json"), status_code=202)


@router.get(
    "/end-users/{external_id}/ssh-public-key",
    response_model=SshPublicKeyOut,
    tags=["end-users"],
)
async def get_ssh_public_key(
    external_id: str,
    request: Request,
    session: SessionDep,
    caller: ReadCaller,
    service: str | None = None,
) -> SshPublicKeyOut:
    """The SSH public key Fivetran connects with for this end-user's tunnelled databases
    (add it to the tunnel host's ``authorized_keys``). ``service`` is required with the
    ``per_service`` group strategy (one group, hence one key, per connector type)."""
    out = await actions.ssh_public_key(
        session, request.app.state, caller=caller, external_id=external_id, service=service
    )
    return SshPublicKeyOut(**out)


# --- sources -----------------------------------------------------------------------------


@router.get("/sources", response_model=SourceList, tags=["sources"])
async def get_sources(
    request: Request,
    caller: ReadCaller,
    category: str | None = None,
    auth_method: AuthMethod | None = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    cursor: str | None = None,
    limit: Limit = 1000,
) -> SourceList:
    """Every Fivetran service this deployment can onboard headlessly, with form schemas, one
    item per way (``auth_method``); filter by ``category``, ``auth_method`` and search ``q``
    (service or display name). The default page holds the whole catalog."""
    after = decode_cursor(cursor, "after", str)
    # In listing order: by service, the preferred way (oauth2) first. " " sorts before every
    # service-name character and, unlike NUL, is valid cursor text.
    key = lambda s: f"{s.service} {int(s.auth_method != 'oauth2')}"  # noqa: E731
    listed = list_sources(request.app.state, category=category, auth_method=auth_method, query=q)
    sources = [s for s in listed if after is None or key(s) > after]
    page = sources[:limit]
    next_cursor = encode_cursor("after", key(page[-1])) if len(sources) > limit else None
    return SourceList(items=[SourceOut(**s.public()) for s in page], next_cursor=next_cursor)


@router.get("/sources/{service}", response_model=SourceOut, tags=["sources"])
async def get_one_source(
    service: str, request: Request, caller: ReadCaller, auth_method: AuthMethod | None = None
) -> SourceOut:
    """One source (its preferred way, or ``auth_method``); 404 for unknown or not enabled."""
    return SourceOut(**get_source(request.app.state, service, auth_method).public())


# --- connections -------------------------------------------------------------------------


@router.post("/connections", response_model=ConnectionOut, status_code=201, tags=["connections"])
async def create_connection(
    body: ConnectionCreate,
    request: Request,
    session: SessionDep,
    caller: WriteCaller,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Create a connection of a credentials source (API key, username/password, database,
    SSH tunnel). Secrets go to the vault and never echo back. Supports
    ``Idempotency-Key``; a retry after a Fivetran failure finishes the same connection."""
    app_state = request.app.state
    handle = await idempotency.begin(
        session,
        caller_id=caller.key_id,
        scope="POST /v1/connections",
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        ttl_hours=app_state.settings.api.idempotency_ttl_hours,
    )
    if handle.replay is not None:
        return handle.replay_response()
    if handle.resume_id is not None:
        conn, _ = await conn_service.get_connection(session, caller, handle.resume_id)
        await conn_service.claim_for_resume(session, conn)
        await conn_service.resume_connection(session, app_state, conn)
    else:
        conn = await conn_service.create_credentials_connection(
            session,
            app_state,
            caller=caller,
            end_user_external_id=body.end_user,
            service=body.service,
            config=body.config,
            credentials=body.credentials,
            idempotency=handle,
        )
    out = ConnectionOut.of(conn, body.end_user).dump()
    await handle.complete(session, status_code=201, body=out)
    return JSONResponse(out, status_code=201)


@router.get("/connections", response_model=ConnectionPage, tags=["connections"])
async def list_connections(
    session: SessionDep,
    caller: ReadCaller,
    end_user: str | None = None,
    state: ConnectionState | None = None,
    service: str | None = None,
    cursor: str | None = None,
    limit: Limit = 100,
) -> ConnectionPage:
    """Connections (of one end-user with ``?end_user=``, in one ``state``, of one
    ``service``), from our own state."""
    rows, next_cursor = await conn_service.list_connections(
        session,
        caller=caller,
        end_user_external_id=end_user,
        cursor=cursor,
        limit=limit,
        state=state,
        service=service,
    )
    return ConnectionPage(
        items=[ConnectionOut.of(c, e.external_id) for c, e in rows], next_cursor=next_cursor
    )


@router.get("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def get_connection(
    target: ReadConnection,
    refresh: bool = False,
) -> ConnectionOut:
    """One connection from our own state (no Fivetran call); ``?refresh=true`` forces one."""
    conn, end_user = await target.load()
    if refresh:
        await conn_service.refresh_from_fivetran(target.session, target.state, conn)
    return ConnectionOut.of(conn, end_user.external_id)


@router.patch("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def patch_connection(
    target: WriteConnection,
    body: ConnectionPatch,
) -> ConnectionOut:
    """Change ``paused``, ``sync_frequency``, ``daily_sync_time`` or allowed config fields."""
    conn, end_user = await target.load()
    await actions.update_connection(
        target.session, target.state, conn, changes=body.model_dump(exclude_unset=True)
    )
    return ConnectionOut.of(conn, end_user.external_id)


@router.delete("/connections/{connection_id}", status_code=204, tags=["connections"])
async def delete_connection(target: WriteConnection) -> Response:
    """Delete at Fivetran, revoke tokens where possible, shred the connection's secrets."""
    conn, _ = await target.load()
    await actions.delete_connection(target.session, target.state, conn)
    return Response(status_code=204)


@router.post(
    "/connections/{connection_id}/sync",
    response_model=ActionOut,
    status_code=202,
    tags=["connections"],
)
async def sync_connection(target: WriteConnection, body: SyncIn | None = None) -> ActionOut:
    """Trigger a sync (``force`` restarts a running one)."""
    conn, _ = await target.load()
    await actions.sync(target.state, conn, force=(body or SyncIn()).force)
    return ActionOut(connection_id=conn.id, status="sync_triggered")


@router.post(
    "/connections/{connection_id}/resync",
    response_model=ActionOut,
    status_code=202,
    tags=["connections"],
)
async def resync_connection(target: WriteConnection, body: ResyncIn | None = None) -> ActionOut:
    """Historical re-sync, of everything or of ``scope`` (``{schema: [tables]}``)."""
    conn, _ = await target.load()
    await actions.resync(target.state, conn, scope=(body or ResyncIn()).scope)
    return ActionOut(connection_id=conn.id, status="resync_triggered")


@router.post(
    "/connections/{connection_id}/test", response_model=ConnectionOut, tags=["connections"]
)
async def test_connection(target: WriteConnection, body: TestIn | None = None) -> ConnectionOut:
    """Run Fivetran's setup tests now; the connection's state follows the result."""
    conn, end_user = await target.load()
    test = body or TestIn()
    await actions.run_tests(
        target.session,
        target.state,
        conn,
        trust_certificates=test.trust_certificates,
        trust_fingerprints=test.trust_fingerprints,
    )
    return ConnectionOut.of(conn, end_user.external_id)


@router.post(
    "/connections/{connection_id}/approve-fingerprint",
    response_model=ConnectionOut,
    tags=["connections"],
)
async def approve_fingerprint(
    target: WriteConnection, body: FingerprintIn | None = None
) -> ConnectionOut:
    """Approve the SSH host fingerprint reported by the failed setup test (or the one given)
    and re-run the setup tests."""
    conn, end_user = await target.load()
    data = body or FingerprintIn()
    await actions.approve_fingerprint(
        target.session, target.state, conn, hash_=data.hash, public_key=data.public_key
    )
    return ConnectionOut.of(conn, end_user.external_id)


@router.post(
    "/connections/{connection_id}/approve-certificate",
    response_model=ConnectionOut,
    tags=["connections"],
)
async def approve_certificate(
    target: WriteConnection, body: CertificateIn | None = None
) -> ConnectionOut:
    """Approve the TLS certificate reported by the failed setup test (or the one given) and
    re-run the setup tests."""
    conn, end_user = await target.load()
    data = body or CertificateIn()
    await actions.approve_certificate(
        target.session, target.state, conn, hash_=data.hash, encoded_cert=data.encoded_cert
    )
    return ConnectionOut.of(conn, end_user.external_id)


@router.get("/connections/{connection_id}/schema", response_model=SchemaOut, tags=["connections"])
async def get_connection_schema(target: ReadConnection) -> SchemaOut:
    """Tables and columns (enabled, hashed) and the platform policy."""
    conn, _ = await target.load()
    return SchemaOut(**await actions.get_schema(target.state, conn))


@router.patch("/connections/{connection_id}/schema", response_model=SchemaOut, tags=["connections"])
async def patch_connection_schema(target: WriteConnection, body: SchemaPatch) -> SchemaOut:
    """Enable/disable tables and columns, hash columns, set ``schema_change_handling``.
    The platform policy wins; ``refused`` lists what it did not allow."""
    conn, _ = await target.load()
    out = await actions.patch_schema(
        target.state, conn, requested=body.model_dump(exclude_none=True)
    )
    return SchemaOut(**out)


@router.post(
    "/connections/{connection_id}/reauthorize",
    response_model=ConnectSessionOut,
    status_code=201,
    tags=["connections"],
)
async def reauthorize_connection(target: WriteConnection, body: ReauthorizeIn) -> ConnectSessionOut:
    """A connect session that re-authorizes this (OAuth) connection; send the end-user to
    its ``connect_url``."""
    from app.errors import InvalidInput
    from app.onboarding.connect.service import create_connect_session

    conn, end_user = await target.load()
    if conn.auth_method != "oauth2":
        raise InvalidInput(
            "Only OAuth connections are re-authorized; PATCH the credentials instead",
            code="not_an_oauth_connection",
            field="connection_id",
        )
    created = await create_connect_session(
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


@router.post("/payloads/preview", response_model=PreviewOut, tags=["connections"])
async def preview_payload(
    body: PreviewIn, request: Request, session: SessionDep, caller: ReadCaller
) -> PreviewOut:
    """The exact Fivetran create body for this end-user, service and config, secrets
    masked. Writes nothing."""
    out = await actions.preview_payload(
        session,
        request.app.state,
        caller=caller,
        end_user_external_id=body.end_user,
        service=body.service,
        config=body.config,
        credentials=body.credentials,
        auth_method=body.auth_method,
    )
    return PreviewOut(**out)
