"""Connections: reservation for OAuth, creation from credentials, the Fivetran lifecycle.

Creating at Fivetran never loses a token and never duplicates a connection:

* secrets (tokens stored by the callback, credentials stored here) and the connection row in
  state ``creating`` are **committed before** the Fivetran create (durable point);
* the destination schema is deterministic per (end-user, service, slot), so when a create
  times out or fails ambiguously we look it up with ``find_connection(group_id, schema)``
  before ever sending it again;
* the Fivetran id is committed as soon as it is known (second durable point); setup tests,
  schema policy and un-pausing follow and are resumable;
* a ``creating`` connection left behind (Fivetran down, process killed) is finished by a
  retry with the same ``Idempotency-Key``, by :func:`resume_creating` (startup) or by the
  reconciliation worker.

Connect Card sources (``auth_method`` ``connect_card``) take the same create path without
``auth`` and without setup tests; once the connection exists at Fivetran it waits in
``authorizing`` for the end-user to finish Fivetran's card (:func:`complete_connect_card`,
called by the card's return to us, :mod:`app.connect.card`).

Single refresher: once a grant is handed to Fivetran (``grant_handed_off_at``), only Fivetran
refreshes it; :func:`ensure_refresh_allowed` raises for such a grant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller, end_user_prefix_clause
from app.connections import schema_policy, states
from app.connections.client_credentials import check_client_credentials
from app.connections.models import Connection
from app.connections.replaced_tokens import revoke_replaced_refresh_token
from app.db import new_id, try_insert, utcnow
from app.end_users import names
from app.end_users import service as end_user_service
from app.end_users.group_repair import group_missing_error
from app.end_users.models import EndUser
from app.errors import (
    AppError,
    Conflict,
    InvalidInput,
    NotFound,
    ServiceUnavailable,
    invalid_fields,
)
from app.fivetran import secret_paths
from app.fivetran.errors import (
    FivetranAmbiguous,
    FivetranConflict,
    FivetranError,
    FivetranInvalidInput,
    FivetranNotFound,
    FivetranServerError,
    FivetranTooManyRequests,
    FivetranUnavailable,
    fivetran_problem,
)
from app.fivetran.payloads import (
    AuthValues,
    build_auth_patch,
    build_create_payload,
    reported_schema,
)
from app.fivetran.timestamps import parse_fivetran_time
from app.kit.idempotency import IdempotencyHandle
from app.kit.pagination import decode_cursor, encode_cursor
from app.providers.client import revoke
from app.providers.registry import FivetranParts, Provider, ProviderRegistry
from app.providers.tokens import TokenResult
from app.sources import forms
from app.sources.auth_forms import split_auth_block
from app.sources.catalog import Source, validate_config
from app.state import AppState

log = logging.getLogger("pbf.onboarding")

__all__ = [
    "Connection",
    "complete_oauth",
    "fail_oauth",
    "find_by_fivetran_id",
    "mark_authorizing",
    "refresh_from_fivetran",
    "reserve_oauth_connection",
    "resume_creating",
]

OWNER = "connection"
#: ``auth_method`` of connections authorized through Fivetran's Connect Card.
CONNECT_CARD = "connect_card"
TOKEN_FIELDS = ("refresh_token", "access_token")
FAILED_TEST_STATUSES = frozenset({"FAILED", "JOB_FAILED"})


class GrantHandedOff(Conflict):
    """A refresh was attempted on a grant that Fivetran now owns (single-refresher rule)."""

    code = "grant_handed_off"
    title = "Grant handed off to Fivetran"


def remote_id(conn: Connection) -> str:
    """The Fivetran id of a connection this code path already created there."""
    if conn.fivetran_connection_id is None:
        raise RuntimeError(f"connection {conn.id} has no Fivetran id yet")
    return conn.fivetran_connection_id


def _group_id(conn: Connection) -> str:
    if conn.group_id is None:
        raise RuntimeError(f"connection {conn.id} has no Fivetran group yet")
    return conn.group_id


def credential_field(name: str) -> str:
    return f"credentials.{name}"


# --- lookups -----------------------------------------------------------------------------


async def find_by_fivetran_id(
    session: AsyncSession, fivetran_connection_id: str
) -> Connection | None:
    """Our connection for a Fivetran connection id (deleted ones included), or None."""
    return await session.scalar(
        select(Connection).where(Connection.fivetran_connection_id == fivetran_connection_id)
    )


#: Built once at import: building it per request cost about 55 µs (expression + cache key).
_CONNECTION_BY_ID = (
    select(Connection, EndUser)
    .join(EndUser, EndUser.id == Connection.end_user_id)
    .where(Connection.id == bindparam("connection_id"))
)


async def get_connection(
    session: AsyncSession, caller: Caller | None, connection_id: str
) -> tuple[Connection, EndUser]:
    """A live connection visible to ``caller``; 404 ``connection_not_found`` otherwise."""
    row = await session.execute(_CONNECTION_BY_ID, {"connection_id": connection_id})
    found = row.first()
    if found is None:
        raise NotFound(f"Connection '{connection_id}' not found", code="connection_not_found")
    conn, end_user = found
    if (
        conn.state == states.DELETED
        or end_user.deleted_at is not None
        or (caller is not None and not caller.can_access_end_user(end_user.external_id))
    ):
        raise NotFound(f"Connection '{connection_id}' not found", code="connection_not_found")
    return conn, end_user


async def list_connections(
    session: AsyncSession,
    *,
    caller: Caller,
    end_user_external_id: str | None,
    cursor: str | None,
    limit: int,
    state: str | None = None,
    service: str | None = None,
) -> tuple[list[tuple[Connection, EndUser]], str | None]:
    after = decode_cursor(cursor, "after", str)
    stmt = (
        select(Connection, EndUser)
        .join(EndUser, EndUser.id == Connection.end_user_id)
        .where(Connection.state != states.DELETED, EndUser.deleted_at.is_(None))
        .order_by(Connection.id)
    )
    if end_user_external_id is not None:
        # One statement: the end-user is joined anyway; its 404 is only needed when empty.
        caller.require_end_user(end_user_external_id)
        stmt = stmt.where(
            EndUser.external_id == end_user_external_id, EndUser.offboarding_state.is_(None)
        )
    if caller.end_user_prefix:
        stmt = stmt.where(end_user_prefix_clause(EndUser.external_id, caller.end_user_prefix))
    if state is not None:
        stmt = stmt.where(Connection.state == state)
    if service is not None:
        stmt = stmt.where(Connection.service == service)
    if after is not None:
        stmt = stmt.where(Connection.id > after)
    rows = [(c, e) for c, e in (await session.execute(stmt.limit(limit + 1))).all()]
    if not rows and end_user_external_id is not None:
        # Unknown, deleted or offboarding end-user: the same 404 as every end-user lookup.
        await end_user_service.get_end_user(session, caller, end_user_external_id)
    next_cursor = encode_cursor("after", rows[limit - 1][0].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


# --- new rows ----------------------------------------------------------------------------


async def _new_connection(
    session: AsyncSession,
    *,
    end_user: EndUser,
    source: Source,
    config: dict[str, Any],
    initial_state: str,
    reason: str,
    group_id: str | None,
    secret_fields: list[str],
) -> Connection:
    """Insert a connection in its first state at the next free slot (race-safe)."""
    for _ in range(5):
        slot = await _free_slot(session, end_user.id, source.service)
        now = utcnow()
        conn = Connection(
            id=new_id("con"),
            end_user_id=end_user.id,
            service=source.service,
            slot=slot,
            auth_method=source.auth_method,
            provider_key=source.provider_key,
            state=initial_state,
            state_reason=reason,
            group_id=group_id,
            schema_name=names.schema_name(
                end_user.group_strategy, slug=end_user.slug, service=source.service, slot=slot
            ),
            config=config,
            secret_fields=secret_fields,
            oauth_metadata={},
            paused=True,
            created_at=now,
            updated_at=now,
        )
        if not await try_insert(session, conn):
            continue  # another request took this slot: take the next one
        # Record the first state as a transition from nothing.
        conn.state = None  # type: ignore[assignment]
        await states.transition(session, conn, initial_state, reason=reason)
        return conn
    raise Conflict("Could not allocate a connection slot; retry", code="concurrent_update")


async def _free_slot(session: AsyncSession, end_user_id: str, service: str) -> int:
    """The lowest slot no connection holds. Released slots (connections that failed before
    reaching Fivetran) are negative and free their slot and schema name for the next one."""
    held = set(
        (
            await session.scalars(
                select(Connection.slot).where(
                    Connection.end_user_id == end_user_id,
                    Connection.service == service,
                    Connection.slot > 0,
                )
            )
        ).all()
    )
    return next(n for n in range(1, len(held) + 2) if n not in held)


async def _release_slot(session: AsyncSession, conn: Connection) -> None:
    """Give up the slot (and so the schema name) of a connection that never existed at
    Fivetran: it moves to a unique negative slot; a re-authorization claims a new one."""
    low = await session.scalar(
        select(func.min(Connection.slot)).where(
            Connection.end_user_id == conn.end_user_id, Connection.service == conn.service
        )
    )
    conn.slot = min(int(low or 0), 0) - 1
    await session.flush()


async def _claim_slot(session: AsyncSession, conn: Connection, end_user: EndUser) -> None:
    """A released connection authorizing again gets the lowest free slot and its schema."""
    for _ in range(5):
        slot = await _free_slot(session, conn.end_user_id, conn.service)
        try:
            async with session.begin_nested():
                conn.slot = slot
                conn.schema_name = names.schema_name(
                    end_user.group_strategy, slug=end_user.slug, service=conn.service, slot=slot
                )
                await session.flush()
            return
        except IntegrityError:
            continue  # another request took this slot: take the next one
    raise Conflict("Could not allocate a connection slot; retry", code="concurrent_update")


async def reserve_oauth_connection(
    session: AsyncSession,
    *,
    end_user: EndUser,
    service: str,
    config: dict[str, Any],
    connection_id: str | None = None,
    app_state: AppState,
) -> Connection:
    """A ``pending`` connection for an OAuth connect session.

    With ``connection_id`` (re-authorization): checks that the connection belongs to the
    end-user and has the same service, and returns it unchanged. ``config`` is validated
    against the source's form schema first (422 naming the field); nothing is written then.
    """
    source = app_state.sources.get(service)
    if source.auth_method not in ("oauth2", "oauth1"):
        raise InvalidInput(
            f"Source '{service}' is set up with credentials (POST /v1/connections), not OAuth",
            code="not_an_oauth_source",
            field="service",
        )
    if connection_id is not None:
        conn = await session.get(Connection, connection_id)
        if conn is None or conn.end_user_id != end_user.id or conn.state == states.DELETED:
            raise NotFound(f"Connection '{connection_id}' not found", code="connection_not_found")
        if conn.service != service:
            raise InvalidInput(
                f"Connection '{connection_id}' is a {conn.service} connection",
                code="service_mismatch",
                field="service",
            )
        if conn.slot < 0:
            await _claim_slot(session, conn, end_user)
        return conn
    validate_config(source, config)
    return await _new_connection(
        session,
        end_user=end_user,
        source=source,
        config=dict(config),
        initial_state=states.PENDING,
        reason="connect_session_started",
        group_id=None,
        secret_fields=[],
    )


async def mark_authorizing(session: AsyncSession, connection: Connection) -> None:
    """The end-user was sent to the provider. A connection that exists at Fivetran keeps its
    state (a re-authorization does not interrupt it)."""
    if connection.fivetran_connection_id is None and connection.state in (
        states.PENDING,
        states.SETUP_FAILED,
    ):
        await states.transition(session, connection, states.AUTHORIZING, reason="sent_to_provider")


async def fail_oauth(session: AsyncSession, connection: Connection, *, error_code: str) -> None:
    """The OAuth flow failed (denied consent, bad token response …)."""
    reason = f"oauth_failed:{error_code}"[:200]
    if connection.fivetran_connection_id is None and connection.state in (
        states.PENDING,
        states.AUTHORIZING,
    ):
        await states.transition(session, connection, states.SETUP_FAILED, reason=reason)
        # Nothing exists at Fivetran: the next attempt gets this slot and schema name.
        await _release_slot(session, connection)
    else:
        connection.state_reason = reason
        connection.updated_at = utcnow()
        await session.flush()


async def discard_reserved_connection(
    session: AsyncSession, connection: Connection, *, reason: str
) -> None:
    """A connection reserved for a connect session that ended up returning another one
    (``return_existing``): it never existed at Fivetran, so it is deleted quietly (no
    event) and its slot released."""
    if connection.fivetran_connection_id is not None or connection.state not in (
        states.PENDING,
        states.AUTHORIZING,
    ):
        return
    await states.transition(session, connection, states.DELETED, reason=reason, emit=False)
    await _release_slot(session, connection)


async def live_connection_with_account(
    session: AsyncSession,
    *,
    end_user_id: str,
    service: str,
    account_id: str,
    exclude_id: str,
) -> Connection | None:
    """The oldest non-deleted connection of this end-user and service holding the provider
    account ``account_id`` ("already connected"), other than ``exclude_id``.

    Locks the end-user's row first with a no-op UPDATE (a row lock on PostgreSQL, the write
    lock on SQLite, both held until the caller's commit, which records the new account in the
    same transaction), so two consents of the same account arriving together cannot both find
    "not connected yet": the second waits, then sees the first."""
    await session.execute(
        update(EndUser).where(EndUser.id == end_user_id).values(slug=EndUser.slug)
    )
    return await session.scalar(
        select(Connection)
        .where(
            Connection.end_user_id == end_user_id,
            Connection.service == service,
            Connection.account_id == account_id,
            Connection.state != states.DELETED,
            Connection.id != exclude_id,
        )
        .order_by(Connection.created_at, Connection.id)
        .limit(1)
    )


# --- credentials sources -----------------------------------------------------------------


def _split_credentials(
    source: Source, config: dict[str, Any], credentials: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """(config to store, secrets by path). Secrets may come in ``config`` or ``credentials``
    (the same shape holding only secrets), at any depth (see :mod:`app.fivetran.secret_paths`).
    """
    split = secret_paths.split_secrets(source.service, config, credentials)
    if split.errors:
        raise invalid_fields(split.errors)
    return split.stored, split.secrets


async def create_credentials_connection(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    end_user_external_id: str,
    service: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None,
    idempotency: IdempotencyHandle | None = None,
    auth_method: str | None = None,
) -> Connection:
    """``POST /v1/connections``: validate, store secrets, create at Fivetran (see module doc).

    Credential sources are created with their secrets and tested; Connect Card sources
    (``auth_method`` ``connect_card``, or a service offered only that way) are created without
    auth and wait in ``authorizing`` for the card. Validation (including the exact Fivetran
    payload) happens before anything is written.
    """
    end_user = await end_user_service.get_end_user(session, caller, end_user_external_id)
    source = _creation_source(app_state, service, auth_method)
    card = source.auth_method == CONNECT_CARD
    plain, secrets = _split_credentials(source, config, credentials)
    plain = forms.with_defaults(source.config_schema, plain)
    validate_config(source, secret_paths.merge_secrets(plain, secrets))
    if source.fills_auth:  # a service principal is tried at the provider first (422/502)
        await check_client_credentials(
            app_state, service, secret_paths.merge_secrets(plain, secrets)
        )
    group_id = await end_user_service.group_for_connection(session, app_state, end_user, service)
    conn = await _new_connection(
        session,
        end_user=end_user,
        source=source,
        config=plain,
        initial_state=states.CREATING,
        reason="card_requested" if card else "credentials_submitted",
        group_id=group_id,
        secret_fields=sorted(secrets),
    )
    # Validate the exact body before anything becomes durable (422 rolls everything back).
    body = create_body(source, conn, secret_paths.merge_secrets(plain, secrets), auth=None)
    vault = app_state.vault
    for key, value in secrets.items():
        await vault.put(
            session,
            end_user_id=end_user.id,
            owner_type=OWNER,
            owner_id=conn.id,
            field=credential_field(key),
            value=value,
        )
    if idempotency is not None:
        await idempotency.remember_resource(session, conn.id)
    await audit.record(
        session,
        action="connection.create",
        target_type="connection",
        target_id=conn.id,
        end_user=end_user.external_id,
        details={
            "service": service,
            "auth_method": source.auth_method,
            "credentials_set": sorted(secrets),
        },
    )
    await session.commit()  # durable point: connection row + secrets before the Fivetran call
    await create_remote(session, app_state, conn, body=body, resumed=False)
    return conn


def _creation_source(app_state: AppState, service: str, auth_method: str | None) -> Source:
    """The way ``POST /v1/connections`` creates ``service``: the one asked for (404 when it
    is not offered that way), else credentials, else the card; OAuth-only is a 422."""
    if auth_method is not None:
        return app_state.sources.get(service, auth_method)
    source = app_state.sources.get(service)
    if source.auth_method in ("oauth2", "oauth1"):
        try:  # a service that also takes credentials (the caller chose this way)
            return app_state.sources.get(service, "credentials")
        except NotFound:
            raise InvalidInput(
                f"Source '{service}' is authorized with OAuth: start a connect session"
                " (or create it with auth_method 'connect_card' where offered)",
                code="oauth_source",
                field="service",
            ) from None
    return source


def create_body(
    source: Source,
    conn: Connection,
    fivetran_config: dict[str, Any],
    *,
    auth: AuthValues | None,
    trust_fingerprints: bool = False,
    trust_certificates: bool = False,
) -> dict[str, Any]:
    config, form_auth = split_auth_block(
        {
            k: v
            for k, v in fivetran_config.items()
            if k not in source.input_fields or k in source.fivetran_fields
        },
        fills_auth=source.fills_auth,
    )
    body: dict[str, Any] = build_create_payload(
        source.service,
        group_id=conn.group_id or "",
        schema=conn.schema_name,
        config=config,
        # a provider's tokens, or the form's own auth block (credential route)
        auth=auth if auth is not None else form_auth,
        table=source.table_name,
        paused=True,
        # Without auth nothing can pass yet: the card runs the tests (Fivetran's guidance).
        run_setup_tests=source.auth_method != CONNECT_CARD,
        trust_certificates=trust_certificates,
        trust_fingerprints=trust_fingerprints,
        sync_frequency=conn.sync_frequency,
        daily_sync_time=conn.daily_sync_time,
    )
    return body


# --- OAuth -------------------------------------------------------------------------------


def _registry(app_state: AppState) -> ProviderRegistry:
    registry = getattr(app_state, "providers", None)
    if registry is None:
        raise ServiceUnavailable("The provider catalog is not loaded", code="providers_unavailable")
    return registry


def provider_for(app_state: AppState, conn: Connection) -> Provider:
    registry = _registry(app_state)
    provider = registry.get(conn.provider_key) if conn.provider_key else None
    if provider is None:
        provider = registry.for_service(conn.service)
    if provider is None:
        raise ServiceUnavailable(
            f"No OAuth app is configured for '{conn.service}'", code="provider_not_configured"
        )
    return provider


async def oauth_parts(
    session: AsyncSession, app_state: AppState, conn: Connection, token_result: TokenResult
) -> FivetranParts:
    """The provider's auth values and config additions for ``conn`` from ``token_result``
    (stored tokens on a resume, placeholders in a preview), with the app's credentials."""
    provider = provider_for(app_state, conn)
    app_credentials = await _registry(app_state).credentials(session, provider.key)
    return provider.fivetran_parts(token_result, app_credentials, conn.config)


async def stored_token_result(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> TokenResult:
    """Rebuild the token result from the vault + stored metadata (resume after a failure)."""
    vault = app_state.vault
    tokens = {}
    for name in TOKEN_FIELDS:
        tokens[name] = await vault.get(
            session, end_user_id=conn.end_user_id, owner_type=OWNER, owner_id=conn.id, field=name
        )
    if tokens["refresh_token"] is None and tokens["access_token"] is None:
        raise Conflict(
            "The tokens of this connection are gone; re-authorize it",
            code="tokens_unavailable",
        )
    # Provider metadata only; the grant's scope, issuer and client id are the connect flow's
    # OAuthGrant (rows written before kept copies here under "_" keys: skipped).
    meta = {k: str(v) for k, v in (conn.oauth_metadata or {}).items() if not k.startswith("_")}
    return TokenResult(
        provider_key=conn.provider_key or "",
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        expires_at=None,
        granted_scope=None,
        issuer="",
        client_id="",
        metadata=meta,
    )


async def complete_oauth(
    session: AsyncSession,
    app_state: AppState,
    *,
    connection: Connection,
    token_result: TokenResult,
    parts: FivetranParts,
) -> Connection:
    """Create (or re-authorize) the Fivetran connection once the tokens are in the vault.

    Called by the OAuth callback after it stored the tokens (owner ``connection``) and
    committed, with the provider's ``parts`` of the body taken from those tokens. Returns
    the connection in its new state (``connected`` or ``setup_failed``; a
    re-authorization that still fails its tests stays ``broken``). When Fivetran cannot
    be reached the connection stays ``creating`` (committed, tokens safe) and the Fivetran
    error is raised as an ``AppError`` (503/429); :func:`resume_creating` finishes it.
    """
    conn = connection
    end_user = await live_end_user(session, app_state, conn)
    conn.provider_key = token_result.provider_key or conn.provider_key
    # The provider's metadata (realm_id, instance_url…) the auth mapping reads on a resume;
    # the grant itself (scope, issuer, client id) is recorded once, in the connect flow's grant.
    conn.oauth_metadata = dict(token_result.metadata or {})
    conn.updated_at = utcnow()
    if conn.fivetran_connection_id is not None:
        await _reauthorize_remote(session, app_state, conn, auth=parts.auth)
        return conn
    source = app_state.sources.get(conn.service)
    await create_authorized(
        session,
        app_state,
        conn,
        end_user,
        body=lambda: create_body(source, conn, {**conn.config, **parts.config}, auth=parts.auth),
    )
    return conn


async def live_end_user(session: AsyncSession, app_state: AppState, conn: Connection) -> EndUser:
    """The connection's end-user, once an authorization came back. Deleted or offboarded while
    the end-user was at the provider: the tokens the callback just stored must not outlive
    that — shredded and committed, then 404 ``connection_not_found``."""
    end_user = await end_user_service.get_end_user_by_id(session, conn.end_user_id)
    if conn.state == states.DELETED or end_user.offboarding_state is not None:
        await app_state.vault.delete(session, owner_type=OWNER, owner_id=conn.id)
        await session.commit()
        raise NotFound("Connection not found", code="connection_not_found")
    return end_user


async def create_authorized(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    end_user: EndUser,
    *,
    body: Callable[[], dict[str, Any]],
) -> None:
    """Create the Fivetran connection of a freshly authorized ``conn`` (its tokens are
    committed): its group first, then ``body()`` (built once the group is known), ``creating``
    made durable, then the create. Fivetran unavailable for the group keeps the connection
    resumable (``creating``; resume resolves the group first) instead of ``authorizing``."""
    try:
        conn.group_id = await end_user_service.group_for_connection(
            session, app_state, end_user, conn.service
        )
    except AppError as exc:
        if exc.status not in (429, 502, 503, 504):
            raise
        await states.transition(session, conn, states.CREATING, reason="group_unavailable")
        await session.commit()
        raise
    payload = body()
    await states.transition(session, conn, states.CREATING, reason="oauth_completed")
    await session.commit()  # durable point: state creating (the tokens are already committed)
    await create_remote(session, app_state, conn, body=payload, resumed=False)


# --- Fivetran create / finish ------------------------------------------------------------


def _tests_failed(data: dict[str, Any]) -> bool:
    tests = data.get("setup_tests") or []
    if any(str(t.get("status", "")).upper() in FAILED_TEST_STATUSES for t in tests):
        return True
    setup_state = (data.get("status") or {}).get("setup_state")
    return setup_state not in (None, "connected")


def apply_fivetran_status(conn: Connection, data: dict[str, Any]) -> None:
    """Copy Fivetran's view (setup/sync state, tests, schedule, sync times) onto our row."""
    status = data.get("status") or {}
    if status.get("setup_state"):
        conn.setup_state = status["setup_state"]
    if status.get("sync_state"):
        conn.sync_state = status["sync_state"]
    if "setup_tests" in data and data["setup_tests"] is not None:
        conn.setup_tests = list(data["setup_tests"])
    if "paused" in data and data["paused"] is not None:
        conn.paused = bool(data["paused"])
    if data.get("sync_frequency") is not None:
        conn.sync_frequency = int(data["sync_frequency"])
    if "daily_sync_time" in data:
        conn.daily_sync_time = data.get("daily_sync_time")
    succeeded = parse_fivetran_time(data.get("succeeded_at"))
    failed = parse_fivetran_time(data.get("failed_at"))
    if succeeded:
        conn.last_sync_succeeded_at = succeeded
    if failed:
        conn.last_sync_failed_at = failed
    conn.updated_at = utcnow()


async def _leave_creating(
    session: AsyncSession, conn: Connection, exc: Exception, reason: str
) -> AppError:
    """Keep the connection ``creating`` (resumable), commit, and return the error to raise."""
    conn.state_reason = reason[:200]
    conn.updated_at = utcnow()
    await session.commit()
    error = fivetran_problem(exc)
    error.extra.setdefault("connection_id", conn.id)
    return error


def _reported_schema(app_state: AppState, conn: Connection) -> str:
    """The schema name Fivetran reports for ``conn`` (``schema.table`` for schema_table)."""
    try:
        table = app_state.sources.get(conn.service).table_name
    except NotFound:  # the service was disabled since: its table name is the service
        table = conn.service
    return reported_schema(conn.service, conn.schema_name, table)


async def _fail_terminally(
    session: AsyncSession, conn: Connection, exc: Exception, reason: str
) -> None:
    """A 404 from Fivetran while creating or resuming (the group or the connection was
    deleted there): no retry can finish it, so ``setup_failed`` (terminal, re-authorizable),
    never ``creating`` forever."""
    message = getattr(exc, "message", str(exc))
    conn.setup_tests = [{"title": "Fivetran", "status": "FAILED", "message": message[:500]}]
    await states.transition(session, conn, states.SETUP_FAILED, reason=reason)
    await session.commit()


async def create_remote(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    body: dict[str, Any],
    resumed: bool,
) -> None:
    """Create the connection at Fivetran exactly once, then finish its setup."""
    client = app_state.fivetran
    attempts = app_state.settings.onboarding.create_attempts
    schema = _reported_schema(app_state, conn)
    data: dict[str, Any] | None = None
    adopted = False
    last_exc: Exception | None = None
    lookup_first = resumed
    for _ in range(attempts):
        try:
            if lookup_first:
                found = await client.find_connection(_group_id(conn), schema)
                if found is not None:
                    data, adopted = found, True
                    break
            data = await client.create_connection(body)
            break
        except (FivetranAmbiguous, FivetranServerError, FivetranUnavailable) as exc:
            last_exc = exc
            lookup_first = True
            continue
        except FivetranConflict as exc:
            # The schema exists in the group: ours from an earlier attempt, or a stranger's.
            try:
                found = await client.find_connection(_group_id(conn), schema)
            except FivetranError as lookup_exc:
                last_exc = lookup_exc
                lookup_first = True
                continue
            if found is not None and found.get("service") == conn.service:
                data, adopted = found, True
                break
            raise await _leave_creating(session, conn, exc, "fivetran_conflict") from exc
        except FivetranTooManyRequests as exc:
            raise await _leave_creating(session, conn, exc, "fivetran_rate_limited") from exc
        except FivetranNotFound as exc:
            # Only the group can be missing here: it was deleted at Fivetran. Resolve it again
            # on resume, once the end-user is repaired (PUT).
            conn.group_id = None
            missing = group_missing_error()
            raise await _leave_creating(session, conn, missing, "end_user_group_missing") from exc
        except FivetranInvalidInput as exc:
            conn.setup_tests = [
                {"title": "Fivetran request", "status": "FAILED", "message": exc.message}
            ]
            await states.transition(
                session, conn, states.SETUP_FAILED, reason=f"fivetran_rejected:{exc.code}"
            )
            await session.commit()
            return
        except FivetranError as exc:
            raise await _leave_creating(session, conn, exc, f"fivetran_error:{exc.status}") from exc
    if data is None and lookup_first:
        # The last attempt was ambiguous (its answer may be lost after Fivetran processed
        # it): look once more, so a created connection is adopted now, not orphaned.
        try:
            found = await client.find_connection(_group_id(conn), schema)
        except FivetranError as exc:
            last_exc = exc
        else:
            if found is not None:
                data, adopted = found, True
    if data is None:
        assert last_exc is not None
        raise await _leave_creating(session, conn, last_exc, "fivetran_unavailable") from last_exc
    if await _gone_meanwhile(session, conn):
        # Deleted or offboarded while the create was in flight: what Fivetran just made must
        # not outlive that (it holds the end-user's secrets and would sync their data).
        try:
            await client.delete_connection(str(data["id"]))
        except FivetranError as exc:
            log.error(
                "could not delete a Fivetran connection created after its deletion",
                extra={"connection_id": conn.id, "fivetran_status": exc.status},
            )
        raise NotFound(f"Connection '{conn.id}' not found", code="connection_not_found")
    conn.fivetran_connection_id = str(data["id"])
    if conn.auth_method == "oauth2":
        conn.grant_handed_off_at = utcnow()
    apply_fivetran_status(conn, data)
    conn.state_reason = "fivetran_connection_adopted" if adopted else "fivetran_connection_created"
    await states.emit_event(session, conn, "connection.created")
    if conn.auth_method == CONNECT_CARD:
        # Exists at Fivetran without auth: the end-user authorizes it in Fivetran's card.
        await states.transition(session, conn, states.AUTHORIZING, reason="awaiting_connect_card")
        await session.commit()
        return
    await session.commit()  # durable point: the Fivetran id is known
    await _discard_tokens_if_configured(session, app_state, conn)
    if adopted and not data.get("setup_tests"):
        try:
            data = await client.run_setup_tests(conn.fivetran_connection_id)
        except FivetranError as exc:
            raise await _leave_creating(session, conn, exc, "setup_tests_pending") from exc
        apply_fivetran_status(conn, data)
    await _finish_setup(session, app_state, conn, data)


async def _gone_meanwhile(session: AsyncSession, conn: Connection) -> bool:
    """The connection was deleted, or its end-user offboarded, by another request while this
    one was creating it at Fivetran (committed state, row locked on PostgreSQL)."""
    await session.refresh(conn, attribute_names=["state"], with_for_update=True)
    offboarding = await session.scalar(
        select(EndUser.offboarding_state).where(EndUser.id == conn.end_user_id)
    )
    return conn.state == states.DELETED or offboarding is not None


async def _finish_setup(
    session: AsyncSession, app_state: AppState, conn: Connection, data: dict[str, Any]
) -> None:
    """Setup tests read: ``setup_failed``, or schema policy → un-pause → ``connected``."""
    if _tests_failed(data):
        await states.transition(session, conn, states.SETUP_FAILED, reason="setup_tests_failed")
        await session.commit()
        return
    try:
        await apply_policy_at_creation(app_state, conn)
        if app_state.settings.onboarding.unpause_after_setup and conn.paused:
            updated = await app_state.fivetran.update_connection(remote_id(conn), {"paused": False})
            conn.paused = False
            if isinstance(updated, dict):
                apply_fivetran_status(conn, updated)
    except FivetranNotFound as exc:
        if conn.state != states.CREATING:
            raise fivetran_problem(exc) from exc
        await _fail_terminally(session, conn, exc, "fivetran_connection_not_found")
        return
    except FivetranError as exc:
        if conn.state == states.CREATING:
            raise await _leave_creating(session, conn, exc, "finishing_setup") from exc
        raise fivetran_problem(exc) from exc
    await states.transition(session, conn, states.CONNECTED, reason="setup_tests_passed")
    await session.commit()


async def apply_policy_at_creation(app_state: AppState, conn: Connection) -> None:
    """Write the platform schema policy onto a fresh connection."""
    client = app_state.fivetran
    policy = app_state.settings.onboarding.schema_policy
    try:
        current = await client.get_schema_config(remote_id(conn))
    except FivetranNotFound:
        current = await client.reload_schema_config(remote_id(conn))
    await client.update_schema_config(
        remote_id(conn), schema_policy.creation_patch(policy, current or {})
    )


async def _reauthorize_remote(
    session: AsyncSession, app_state: AppState, conn: Connection, *, auth: AuthValues
) -> None:
    """PATCH the new ``auth`` onto the existing Fivetran connection and re-run setup tests."""
    client = app_state.fivetran
    body = build_auth_patch(conn.service, auth=auth)
    try:
        await client.update_connection(remote_id(conn), body)
        conn.grant_handed_off_at = utcnow()
        data = await client.run_setup_tests(remote_id(conn))
    except FivetranNotFound as exc:
        await states.transition(session, conn, states.DELETED, reason="deleted_at_fivetran")
        await session.commit()
        raise NotFound(
            "The connection no longer exists at Fivetran", code="connection_gone"
        ) from exc
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    apply_fivetran_status(conn, data)
    if not _tests_failed(data):
        source = app_state.sources.get(conn.service, conn.auth_method)
        inputs = {k: v for k, v in conn.config.items() if k in source.input_fields}
        await revoke_replaced_refresh_token(session, app_state, conn, inputs=inputs)
    await _discard_tokens_if_configured(session, app_state, conn)
    await after_tests(session, app_state, conn, data, reason="reauthorized")


async def complete_connect_card(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> None:
    """The end-user came back from Fivetran's Connect Card: read the connection at Fivetran
    and map what the card did onto our state.

    ``authorizing`` (or ``setup_failed``) → setup passed: schema policy, un-pause,
    ``connected``; not passed: ``setup_failed``. A ``connected``/``broken`` connection
    re-authorized by card becomes ``connected`` or ``broken``. Raises an ``AppError`` when
    Fivetran cannot be read (nothing changed then; the card may be issued again)."""
    try:
        data = await app_state.fivetran.get_connection(remote_id(conn))
    except FivetranNotFound as exc:
        await states.transition(session, conn, states.DELETED, reason="deleted_at_fivetran")
        await session.commit()
        raise NotFound(
            "The connection no longer exists at Fivetran", code="connection_gone"
        ) from exc
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    apply_fivetran_status(conn, data)
    if conn.state in (states.AUTHORIZING, states.SETUP_FAILED) and _tests_failed(data):
        await states.transition(
            session, conn, states.SETUP_FAILED, reason="connect_card_setup_incomplete"
        )
        await session.commit()
        return
    await after_tests(session, app_state, conn, data, reason="connect_card_completed")


async def after_tests(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    data: dict[str, Any],
    *,
    reason: str,
) -> None:
    """Map fresh setup-test results of an existing Fivetran connection onto our state."""
    if conn.state in (states.CREATING, states.SETUP_FAILED, states.PENDING, states.AUTHORIZING):
        if conn.state in (states.PENDING, states.AUTHORIZING):
            await states.transition(session, conn, states.CREATING, reason=reason)
        await _finish_setup(session, app_state, conn, data)
        return
    if _tests_failed(data):
        if conn.state == states.CONNECTED:
            await states.transition(session, conn, states.BROKEN, reason="setup_tests_failed")
        else:
            conn.state_reason = "setup_tests_failed"
    elif conn.state == states.BROKEN:
        await states.transition(session, conn, states.CONNECTED, reason=reason)
    await session.commit()


async def _discard_tokens_if_configured(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> None:
    """Token retention ``discard``: shred the tokens once Fivetran confirmed it has them."""
    if conn.auth_method != "oauth2" or app_state.settings.onboarding.token_retention != "discard":
        return
    for name in TOKEN_FIELDS:
        await app_state.vault.delete(session, owner_type=OWNER, owner_id=conn.id, field=name)
    await session.commit()


#: ``state_reason`` of a ``creating`` connection whose Fivetran create a request is running.
IN_FLIGHT_REASONS = ("credentials_submitted", "card_requested", "resuming", "configured")
#: After this long without a write, an in-flight create is presumed dead (process killed).
IN_FLIGHT_GRACE = timedelta(minutes=5)


async def claim_for_resume(session: AsyncSession, conn: Connection) -> None:
    """Take over a ``creating`` connection for a retry with the same ``Idempotency-Key``.

    Atomic (conditional UPDATE, committed): while the first request — or another retry — is
    still creating it at Fivetran, this is ``409 idempotency_key_in_progress`` instead of a
    second create and a second ``connection.created``. Other states need no claim."""
    if conn.state != states.CREATING or conn.fivetran_connection_id is not None:
        return
    now = utcnow()
    result = await session.execute(
        update(Connection)
        .where(
            Connection.id == conn.id,
            Connection.state == states.CREATING,
            Connection.fivetran_connection_id.is_(None),
            or_(
                Connection.state_reason.not_in(IN_FLIGHT_REASONS),
                Connection.updated_at < now - IN_FLIGHT_GRACE,
            ),
        )
        .values(state_reason="resuming", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.rollback()
        raise Conflict(
            "A request with this Idempotency-Key is still in progress",
            code="idempotency_key_in_progress",
        )
    await session.commit()
    await session.refresh(conn)


async def resume_connection(session: AsyncSession, app_state: AppState, conn: Connection) -> None:
    """Finish a ``creating`` connection (caller retry, startup, reconciliation)."""
    if conn.state != states.CREATING:
        return
    if conn.fivetran_connection_id is not None:
        try:
            data = await app_state.fivetran.run_setup_tests(conn.fivetran_connection_id)
        except FivetranNotFound as exc:
            await _fail_terminally(session, conn, exc, "fivetran_connection_not_found")
            return
        except FivetranError as exc:
            raise await _leave_creating(session, conn, exc, "setup_tests_pending") from exc
        apply_fivetran_status(conn, data)
        await _finish_setup(session, app_state, conn, data)
        return
    if conn.group_id is None:  # the group could not be created at the first attempt
        end_user = await end_user_service.get_end_user_by_id(session, conn.end_user_id)
        conn.group_id = await end_user_service.group_for_connection(
            session, app_state, end_user, conn.service
        )
    source = app_state.sources.get(conn.service, conn.auth_method)
    fivetran_config: dict[str, Any] = dict(conn.config)
    auth = None
    if conn.auth_method == "oauth2":
        token_result = await stored_token_result(session, app_state, conn)
        parts = await oauth_parts(session, app_state, conn, token_result)
        auth = parts.auth
        fivetran_config.update(parts.config)
    else:
        fivetran_config = secret_paths.merge_secrets(
            fivetran_config, await stored_secrets(session, app_state, conn)
        )
    body = create_body(source, conn, fivetran_config, auth=auth)
    await create_remote(session, app_state, conn, body=body, resumed=True)


async def stored_secrets(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> dict[str, str]:
    """The connection's credential secrets from the vault, by path (``pats[0]``, ``password``)."""
    out: dict[str, str] = {}
    for path in conn.secret_fields or []:
        secret = await app_state.vault.get(
            session,
            end_user_id=conn.end_user_id,
            owner_type=OWNER,
            owner_id=conn.id,
            field=credential_field(path),
        )
        if secret is not None:
            out[path] = secret.reveal()
    return out


async def resume_creating(session: AsyncSession, app_state: AppState) -> int:
    """Finish every connection left ``creating`` (startup / reconciliation). Returns how many
    reached a final state; failures stay ``creating`` for the next run."""
    ids = list(
        (
            await session.scalars(select(Connection.id).where(Connection.state == states.CREATING))
        ).all()
    )
    done = 0
    for connection_id in ids:
        conn = await session.get(Connection, connection_id)
        if conn is None:
            continue
        try:
            await resume_connection(session, app_state, conn)
        except AppError as exc:
            log.warning(
                "resume of a creating connection failed",
                extra={"connection_id": connection_id, "code": exc.code},
            )
            continue
        if conn.state != states.CREATING:
            done += 1
    return done


async def delete_remote(app_state: AppState, conn: Connection) -> None:
    """Delete the connection at Fivetran; gone already is fine. A ``creating`` connection
    whose create was ambiguous is looked up by its deterministic schema first.

    Raises ``FivetranError`` for anything else (the caller decides: 503 or resume later).
    """
    client = app_state.fivetran
    fivetran_id = conn.fivetran_connection_id
    if fivetran_id is None and conn.state == states.CREATING and conn.group_id:
        found = await client.find_connection(conn.group_id, _reported_schema(app_state, conn))
        if found is not None and found.get("service") == conn.service:
            fivetran_id = str(found["id"])
    if fivetran_id is None:
        return
    try:
        await client.delete_connection(fivetran_id)
    except FivetranNotFound:
        pass


# --- refresh from Fivetran ---------------------------------------------------------------


async def refresh_from_fivetran(
    session: AsyncSession, app_state: AppState, connection: Connection
) -> Connection:
    """One GET at Fivetran; maps its status onto ours (``?refresh=true``, reconciliation)."""
    conn = connection
    if conn.fivetran_connection_id is None or conn.state == states.DELETED:
        return conn
    try:
        data = await app_state.fivetran.get_connection(conn.fivetran_connection_id)
    except FivetranNotFound:
        await states.transition(session, conn, states.DELETED, reason="deleted_at_fivetran")
        return conn
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    apply_fivetran_status(conn, data)
    setup_state = (data.get("status") or {}).get("setup_state")
    if conn.state in (states.CONNECTED, states.BROKEN, states.PAUSED):
        if data.get("paused") and conn.state != states.PAUSED:
            await states.transition(session, conn, states.PAUSED, reason="paused_at_fivetran")
        elif setup_state == "broken" and conn.state != states.BROKEN:
            await states.transition(session, conn, states.BROKEN, reason="broken_at_fivetran")
        elif (
            setup_state == "connected" and not data.get("paused") and conn.state != states.CONNECTED
        ):
            await states.transition(session, conn, states.CONNECTED, reason="connected_at_fivetran")
    await session.flush()
    return conn


# --- single refresher, revocation --------------------------------------------------------


def ensure_refresh_allowed(connection: Connection) -> None:
    """Raise :class:`GrantHandedOff` when Fivetran owns the grant (never refresh it)."""
    if connection.grant_handed_off_at is not None:
        raise GrantHandedOff(
            "This grant was handed to Fivetran; only Fivetran refreshes it",
        )


async def revoke_tokens(session: AsyncSession, app_state: AppState, connection: Connection) -> bool:
    """Revoke the connection's tokens at the provider when it has a revocation endpoint.

    Best effort (offboarding and deletion go on either way: the secrets are shredded next);
    failures are logged by type only, never with a token.
    """
    if connection.auth_method != "oauth2" or connection.provider_key is None:
        return False

    try:
        provider = provider_for(app_state, connection)
        source = app_state.sources.get(connection.service)
        inputs = {k: v for k, v in connection.config.items() if k in source.input_fields}
        endpoint = provider.endpoints(inputs).revocation_url
        if not endpoint:
            return False
        credentials = await _registry(app_state).credentials(session, provider.key)
    except Exception as exc:
        log.warning(
            "token revocation skipped",
            extra={"connection_id": connection.id, "error_type": type(exc).__name__},
        )
        return False
    revoked = False
    for name in TOKEN_FIELDS:
        secret = await app_state.vault.get(
            session,
            end_user_id=connection.end_user_id,
            owner_type=OWNER,
            owner_id=connection.id,
            field=name,
        )
        if secret is None:
            continue
        try:
            revoked = (
                await revoke(
                    provider,
                    secret,
                    revocation_endpoint=endpoint,
                    credentials=credentials,
                    token_type_hint=name,
                    transport=getattr(app_state, "outbound_transport", None),
                )
                or revoked
            )
        except Exception as exc:
            log.warning(
                "token revocation failed",
                extra={"connection_id": connection.id, "error_type": type(exc).__name__},
            )
    return revoked
