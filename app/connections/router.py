"""HTTP endpoints of connections (and the end-user offboarding and SSH key, which act on
them), payload preview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse

from app.connections import actions as actions
from app.connections import offboarding
from app.connections import service as conn_service
from app.connections.create import create_connection_idempotent
from app.connections.dependencies import ReadConnection, WriteConnection
from app.connections.schemas import (
    ActionOut,
    CertificateIn,
    ConnectionCreate,
    ConnectionOut,
    ConnectionPage,
    ConnectionPatch,
    ConnectionState,
    FingerprintIn,
    PreviewIn,
    PreviewOut,
    ResyncIn,
    SchemaOut,
    SchemaPatch,
    SyncIn,
    TestIn,
)
from app.dependencies import ReadCaller, SessionDep, StateDep, WriteCaller
from app.end_users import service as end_user_service
from app.end_users.schemas import EndUserOut, SshPublicKeyOut
from app.kit.pagination import PageLimit
from app.kit.problems import API_PROBLEMS
from app.kit.schemas import json_answer

router = APIRouter(prefix="/v1", responses=API_PROBLEMS)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]


# --- end-user routes that act on its connections ----------------------------------------


@router.delete(
    "/end-users/{external_id}",
    status_code=204,
    tags=["end-users"],
    responses={202: {"model": EndUserOut, "description": "Offboarding continues later"}},
)
async def delete_end_user(
    external_id: str, state: StateDep, session: SessionDep, caller: WriteCaller
) -> Response:
    """Offboard: revoke tokens where possible, crypto-shred every secret, delete the
    Fivetran connections and the dedicated group. ``202`` with the state when Fivetran is
    unavailable (a retry of this DELETE, or the background resume, finishes it)."""
    row = await end_user_service.start_offboarding(session, caller, external_id)
    done = await offboarding.run_offboarding(session, state, row)
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
    state: StateDep,
    session: SessionDep,
    caller: ReadCaller,
    service: str | None = None,
) -> SshPublicKeyOut:
    """The SSH public key Fivetran connects with for this end-user's tunnelled databases
    (add it to the tunnel host's ``authorized_keys``). ``service`` is required with the
    ``per_service`` group strategy (one group, hence one key, per connector type)."""
    out = await actions.ssh_public_key(
        session, state, caller=caller, external_id=external_id, service=service
    )
    return SshPublicKeyOut(**out)


# --- connections -------------------------------------------------------------------------


@router.post("/connections", response_model=ConnectionOut, status_code=201, tags=["connections"])
async def create_connection(
    body: ConnectionCreate,
    state: StateDep,
    session: SessionDep,
    caller: WriteCaller,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Create a connection of a credentials source (API key, username/password, database,
    SSH tunnel). Secrets go to the vault and never echo back. Supports
    ``Idempotency-Key``; a retry after a Fivetran failure finishes the same connection."""
    return await create_connection_idempotent(
        session, state, caller=caller, body=body, idempotency_key=idempotency_key
    )


@router.get("/connections", response_model=ConnectionPage, tags=["connections"])
async def list_connections(
    session: SessionDep,
    caller: ReadCaller,
    end_user: str | None = None,
    state: ConnectionState | None = None,
    service: str | None = None,
    cursor: str | None = None,
    limit: PageLimit = 100,
) -> Response:
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
    return json_answer(
        ConnectionPage(
            items=[ConnectionOut.of(c, e.external_id) for c, e in rows], next_cursor=next_cursor
        )
    )


@router.get("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def get_connection(
    target: ReadConnection,
    refresh: bool = False,
) -> Response:
    """One connection from our own state (no Fivetran call); ``?refresh=true`` forces one."""
    conn, end_user = await target.load()
    if refresh:
        await conn_service.refresh_from_fivetran(target.session, target.state, conn)
    return json_answer(ConnectionOut.of(conn, end_user.external_id))


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


@router.post("/payloads/preview", response_model=PreviewOut, tags=["connections"])
async def preview_payload(
    body: PreviewIn, state: StateDep, session: SessionDep, caller: ReadCaller
) -> PreviewOut:
    """The exact Fivetran create body for this end-user, service and config, secrets
    masked. Writes nothing."""
    out = await actions.preview_payload(
        session,
        state,
        caller=caller,
        end_user_external_id=body.end_user,
        service=body.service,
        config=body.config,
        credentials=body.credentials,
        auth_method=body.auth_method,
    )
    return PreviewOut(**out)
