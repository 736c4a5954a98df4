"""Caller actions on existing connections: update, delete, sync, resync, test, certificate
and fingerprint approval, schema config, and the payload preview."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import audit
from app.callers.service import Caller
from app.connections import oauth1, schema_policy, states
from app.connections import service as conn_service
from app.connections.models import Connection
from app.end_users import names
from app.end_users import service as end_user_service
from app.end_users.models import EndUser, ServiceGroup
from app.errors import Conflict, InvalidInput, NotFound, invalid_fields
from app.fivetran import secret_paths
from app.fivetran.client import FivetranClient
from app.fivetran.errors import FivetranError, FivetranNotFound, fivetran_problem
from app.fivetran.payloads import AuthValues, mask_secrets
from app.providers.registry import FivetranParts, Provider
from app.providers.tokens import TokenResult
from app.sources import forms
from app.sources.catalog import validate_config
from app.state import AppState
from app.vault import Secret

SYNC_FREQUENCIES = (1, 5, 15, 30, 60, 120, 180, 360, 480, 720, 1440)
_DAILY_TIME_RE = re.compile(r"^(?:[01]\d|2[0-3]):00\Z")
_MASK = "******"


def _require_remote(conn: Connection) -> str:
    if conn.fivetran_connection_id is None:
        raise Conflict(
            f"Connection is '{conn.state}' and does not exist at Fivetran yet",
            code="connection_not_ready",
        )
    return conn.fivetran_connection_id


async def update_connection(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    changes: dict[str, Any],
) -> Connection:
    """``PATCH``: ``paused``, ``sync_frequency``, ``daily_sync_time`` and allowed config
    fields (never schema naming, never auth)."""
    body: dict[str, Any] = {}
    if "sync_frequency" in changes and changes["sync_frequency"] is not None:
        if changes["sync_frequency"] not in SYNC_FREQUENCIES:
            raise InvalidInput(
                f"sync_frequency must be one of {', '.join(map(str, SYNC_FREQUENCIES))}",
                code="invalid_sync_frequency",
                field="sync_frequency",
            )
        body["sync_frequency"] = changes["sync_frequency"]
    if "daily_sync_time" in changes and changes["daily_sync_time"] is not None:
        if not _DAILY_TIME_RE.match(changes["daily_sync_time"]):
            raise InvalidInput(
                "daily_sync_time must be 'HH:00' (00:00-23:00)",
                code="invalid_daily_sync_time",
                field="daily_sync_time",
            )
        body["daily_sync_time"] = changes["daily_sync_time"]
    secrets: dict[str, str] = {}
    config = changes.get("config")
    if config:
        source = app_state.sources.get(conn.service, conn.auth_method)
        for key in config:
            if key in source.input_fields and key not in source.fivetran_fields:
                raise InvalidInput(
                    f"'config.{key}' cannot change after authorization",
                    code="config_field_locked",
                    field=f"config.{key}",
                )
        split = secret_paths.split_secrets(conn.service, config, allow_kept=True)
        errors = split.errors + [
            {
                "field": f"config.{path}",
                "code": "invalid_config",
                "message": f"'{path}' has no stored secret to keep; send the value",
            }
            for path in split.kept
            if path not in conn.secret_fields
        ]
        if errors:
            raise invalid_fields(errors)
        stored = await conn_service.stored_secrets(session, app_state, conn)
        secrets = {**{p: stored[p] for p in split.kept if p in stored}, **split.secrets}
        placeholders = {p: "stored" for p in conn.secret_fields}
        validate_config(
            source,
            {
                **secret_paths.merge_secrets(conn.config, placeholders),
                **secret_paths.merge_secrets(split.stored, secrets),
            },
        )
        body["config"] = secret_paths.merge_secrets(split.stored, secrets)
    paused = changes.get("paused")
    if paused is not None:
        body["paused"] = bool(paused)
    if not body:
        raise InvalidInput("Nothing to update", code="empty_update", field="body")
    fivetran_id = _require_remote(conn)
    if paused is False and conn.state not in (states.PAUSED, states.CONNECTED, states.BROKEN):
        raise Conflict(
            f"A '{conn.state}' connection cannot be resumed", code="connection_not_ready"
        )
    try:
        data = await app_state.fivetran.update_connection(fivetran_id, body)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    if isinstance(data, dict):
        conn_service.apply_fivetran_status(conn, data)
    if config:
        await _store_patched_secrets(session, app_state, conn, config, split)
    if paused is True:
        conn.paused = True
        await states.transition(session, conn, states.PAUSED, reason="paused_by_caller")
    elif paused is False:
        conn.paused = False
        if conn.state == states.PAUSED:
            target = await states.resume_target(session, conn)
            await states.transition(session, conn, target, reason="resumed_by_caller")
    await audit.record(
        session,
        action="connection.update",
        target_type="connection",
        target_id=conn.id,
        details={"fields": sorted(changes)},
    )
    await session.flush()
    return conn


async def _store_patched_secrets(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    config: dict[str, Any],
    split: secret_paths.Split,
) -> None:
    """After Fivetran accepted a config PATCH: a replaced top-level field replaces its
    secrets whole (stale array items are shredded); new secrets go to the vault."""
    kept = set(split.kept)
    dropped = [
        p
        for p in conn.secret_fields
        if secret_paths.parse_path(p)[0] in config and p not in split.secrets and p not in kept
    ]
    for path in dropped:
        await app_state.vault.delete(
            session, owner_type=conn_service.OWNER, owner_id=conn.id, field=f"credentials.{path}"
        )
    for path, value in split.secrets.items():
        await app_state.vault.put(
            session,
            end_user_id=conn.end_user_id,
            owner_type=conn_service.OWNER,
            owner_id=conn.id,
            field=f"credentials.{path}",
            value=value,
        )
    conn.config = {**conn.config, **split.stored}
    conn.secret_fields = sorted((set(conn.secret_fields) - set(dropped)) | set(split.secrets))


async def delete_connection(session: AsyncSession, app_state: AppState, conn: Connection) -> None:
    """Delete at Fivetran (gone already is fine), revoke tokens, shred secrets, ``deleted``."""
    try:
        await conn_service.delete_remote(app_state, conn)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    await conn_service.revoke_tokens(session, app_state, conn)
    await app_state.vault.delete(session, owner_type=conn_service.OWNER, owner_id=conn.id)
    await states.transition(session, conn, states.DELETED, reason="deleted_by_caller")
    await audit.record(
        session, action="connection.delete", target_type="connection", target_id=conn.id
    )


async def sync(app_state: AppState, conn: Connection, *, force: bool) -> None:
    try:
        await app_state.fivetran.sync_connection(_require_remote(conn), force=force)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc


async def resync(
    app_state: AppState, conn: Connection, *, scope: dict[str, list[str]] | None
) -> None:
    if scope is not None and (not scope or any(not tables for tables in scope.values())):
        raise InvalidInput(
            "scope must map schema names to non-empty lists of tables",
            code="invalid_scope",
            field="scope",
        )
    try:
        await app_state.fivetran.resync_connection(_require_remote(conn), scope=scope)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc


async def run_tests(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    trust_certificates: bool = False,
    trust_fingerprints: bool = False,
) -> Connection:
    """Run Fivetran's setup tests now and map the result onto our state."""
    fivetran_id = _require_remote(conn)
    try:
        data = await app_state.fivetran.run_setup_tests(
            fivetran_id,
            trust_certificates=trust_certificates,
            trust_fingerprints=trust_fingerprints,
        )
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    conn_service.apply_fivetran_status(conn, data)
    await conn_service.after_tests(session, app_state, conn, data, reason="setup_tests_passed")
    return conn


def _detail_from_tests(conn: Connection, keys: tuple[str, str]) -> dict[str, str] | None:
    """The first failed setup test detail carrying both ``keys`` (e.g. hash + public_key)."""

    def walk(value: Any) -> dict[str, str] | None:
        if isinstance(value, dict):
            if all(isinstance(value.get(k), str) and value.get(k) for k in keys):
                return {k: value[k] for k in keys}
            for item in value.values():
                found = walk(item)
                if found:
                    return found
        elif isinstance(value, list):
            for item in value:
                found = walk(item)
                if found:
                    return found
        return None

    for test in conn.setup_tests or []:
        if str(test.get("status", "")).upper() in conn_service.FAILED_TEST_STATUSES:
            found = walk(test.get("details"))
            if found:
                return found
    return None


async def approve_fingerprint(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    hash_: str | None,
    public_key: str | None,
) -> Connection:
    """Approve the SSH host fingerprint (from the request, or the failed test's details),
    then re-run the setup tests."""
    return await _approve_and_retest(
        session,
        app_state,
        conn,
        what="fingerprint",
        hash_=hash_,
        key="public_key",
        value=public_key,
        approve=FivetranClient.approve_fingerprint,
    )


async def approve_certificate(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    hash_: str | None,
    encoded_cert: str | None,
) -> Connection:
    """Approve the TLS certificate (from the request, or the failed test's details), then
    re-run the setup tests."""
    return await _approve_and_retest(
        session,
        app_state,
        conn,
        what="certificate",
        hash_=hash_,
        key="encoded_cert",
        value=encoded_cert,
        approve=FivetranClient.approve_certificate,
    )


async def _approve_and_retest(
    session: AsyncSession,
    app_state: AppState,
    conn: Connection,
    *,
    what: str,
    hash_: str | None,
    key: str,
    value: str | None,
    approve: Callable[[FivetranClient, str, str, str], Awaitable[Any]],
) -> Connection:
    """Approve ``what`` with ``hash_`` and ``value`` (named ``key``) or, when one is missing,
    with those the failed setup test reported (409 ``no_<what>_pending`` without them); then
    re-run the setup tests."""
    fivetran_id = _require_remote(conn)
    if not hash_ or not value:
        detail = _detail_from_tests(conn, ("hash", key))
        if detail is None:
            raise Conflict(
                f"No {what} awaits approval; pass hash and {key}", code=f"no_{what}_pending"
            )
        hash_, value = detail["hash"], detail[key]
    try:
        await approve(app_state.fivetran, fivetran_id, hash_, value)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    return await run_tests(session, app_state, conn)


# --- schema ------------------------------------------------------------------------------


async def get_schema(app_state: AppState, conn: Connection) -> dict[str, Any]:
    fivetran_id = _require_remote(conn)
    try:
        try:
            current = await app_state.fivetran.get_schema_config(fivetran_id)
        except FivetranNotFound:
            current = await app_state.fivetran.reload_schema_config(fivetran_id)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    return _schema_out(app_state, current or {}, refused=None)


async def patch_schema(
    app_state: AppState, conn: Connection, *, requested: dict[str, Any]
) -> dict[str, Any]:
    """Apply what the policy permits; report the rest as ``refused``."""
    fivetran_id = _require_remote(conn)
    policy = app_state.settings.onboarding.schema_policy
    client = app_state.fivetran
    try:
        try:
            current = await client.get_schema_config(fivetran_id)
        except FivetranNotFound:
            current = await client.reload_schema_config(fivetran_id)
        filtered = schema_policy.filter_request(policy, requested, current or {})
        if filtered.body:
            try:
                result = await client.update_schema_config(fivetran_id, filtered.body)
            except FivetranNotFound as exc:
                # The connection was just read: what Fivetran does not know is a schema,
                # table or column the caller named.
                raise InvalidInput(
                    f"Unknown schema, table or column: {exc.message}",
                    code="unknown_schema_item",
                    field="schemas",
                ) from exc
        else:
            result = current
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    return _schema_out(app_state, result or {}, refused=filtered.refused)


def _schema_out(
    app_state: AppState, config: dict[str, Any], *, refused: list[dict[str, str]] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema_change_handling": config.get("schema_change_handling"),
        "schemas": config.get("schemas") or {},
        "policy": schema_policy.describe(app_state.settings.onboarding.schema_policy),
    }
    if refused is not None:
        out["refused"] = refused
    return out


# --- preview -----------------------------------------------------------------------------


async def preview_payload(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    end_user_external_id: str,
    service: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None = None,
    auth_method: str | None = None,
) -> dict[str, Any]:
    """The exact create body this service would send for this end-user, secrets masked
    (wherever they sit; ``credentials`` is accepted as on ``POST /v1/connections``).

    Writes nothing: no group is created (an unknown group id shows as a placeholder) and
    OAuth tokens are placeholders (masked like every secret).
    """
    end_user = await end_user_service.get_end_user(session, caller, end_user_external_id)
    source = app_state.sources.get(service, auth_method)
    split = secret_paths.split_secrets(service, config, credentials)
    if split.errors:
        raise invalid_fields(split.errors)
    stored = forms.with_defaults(source.config_schema, split.stored)
    config = secret_paths.merge_secrets(stored, split.secrets)
    validate_config(source, config)
    group_id = await _known_group(session, app_state, end_user, service)
    next_slot = 1 + max(
        [c.slot for c in await _connections_of(session, end_user.id, service)] or [0]
    )
    probe = Connection(
        id="con_preview",
        end_user_id=end_user.id,
        service=service,
        slot=next_slot,
        auth_method=source.auth_method,
        provider_key=source.provider_key,
        state=states.PENDING,
        group_id=group_id,
        schema_name=names.schema_name(
            end_user.group_strategy, slug=end_user.slug, service=service, slot=next_slot
        ),
        config=dict(config),
        secret_fields=[],
        oauth_metadata={},
    )
    fivetran_config = dict(config)
    auth: AuthValues | None = None
    if source.auth_method == "oauth2":
        parts = await _preview_oauth_parts(session, app_state, probe)
        auth = parts.auth
        fivetran_config.update(parts.config)
    elif source.auth_method == "oauth1":  # X / Twitter: placeholder token credentials
        fivetran_config.update(oauth1.preview_config(app_state, service))
    body = conn_service.create_body(source, probe, fivetran_config, auth=auth)
    return {"service": service, "body": mask_secrets(body)}


async def _connections_of(
    session: AsyncSession, end_user_id: str, service: str
) -> list[Connection]:
    return list(
        (
            await session.scalars(
                select(Connection).where(
                    Connection.end_user_id == end_user_id, Connection.service == service
                )
            )
        ).all()
    )


async def _known_group(
    session: AsyncSession, app_state: AppState, end_user: EndUser, service: str
) -> str:
    if end_user.group_strategy == "per_service":
        row = await session.get(ServiceGroup, f"service:{service}")
        return row.fivetran_group_id if row else names.service_group_name(service)
    if end_user.fivetran_group_id:
        return str(end_user.fivetran_group_id)
    if end_user.group_strategy == "shared" and app_state.settings.onboarding.shared_group_id:
        return str(app_state.settings.onboarding.shared_group_id)
    return names.end_user_group_name(end_user.slug)


def _preview_metadata(provider: Provider) -> dict[str, Any]:
    """Placeholders for what the token response and callback would carry (QuickBooks
    ``realm_id``, Pinterest ``refresh_token_expires_at`` …), so the preview has every field."""
    spec = provider.spec
    names = list(spec.token_metadata.values()) + list(spec.callback_metadata.values())
    return {n: (0 if n.endswith("_at") else f"preview-{n}") for n in names}


async def _preview_oauth_parts(
    session: AsyncSession, app_state: AppState, probe: Connection
) -> FivetranParts:
    provider = conn_service.provider_for(app_state, probe)
    placeholder = TokenResult(
        provider_key=provider.key,
        access_token=Secret("preview-access-token"),
        refresh_token=Secret("preview-refresh-token") if provider.requires_refresh_token else None,
        expires_at=None,
        granted_scope=" ".join(provider.scopes),
        issuer="",
        client_id="",
        metadata=_preview_metadata(provider),
    )
    return await conn_service.oauth_parts(session, app_state, probe, placeholder)


async def ssh_public_key(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    external_id: str,
    service: str | None,
) -> dict[str, str]:
    """The public key Fivetran uses for SSH tunnels into this end-user's databases (the
    end-user adds it to the tunnel host's ``authorized_keys``)."""
    end_user = await end_user_service.get_end_user(session, caller, external_id)
    if end_user.group_strategy == "per_service":
        if not service:
            raise InvalidInput(
                "service is required with the per_service group strategy",
                code="missing_service",
                field="service",
            )
        app_state.sources.get(service)
    group_id = await end_user_service.group_for_connection(
        session, app_state, end_user, service or ""
    )
    try:
        key = await app_state.fivetran.group_public_key(group_id)
    except FivetranError as exc:
        raise fivetran_problem(exc) from exc
    if not key:
        raise NotFound("Fivetran has no public key for this group", code="public_key_not_found")
    return {"public_key": key, "group_id": group_id}
