"""Post-consent configuration (account pickers): the choices and the choice.

* :func:`connection_options` — ``GET /v1/connections/{id}/options``: the choices of each
  picker field, fetched from the provider's list endpoint (``pickers.yaml``) with the
  connection's access token. Before hand-off we own the grant: an expired access token is
  refreshed first (:func:`~app.connect.refresh.refresh_owned_grant`, serialized, rotation
  committed), and a token the provider refuses is refreshed once and retried. A grant Fivetran
  owns is never refreshed (single refresher): an expired token then asks for
  re-authorization.
* :func:`configure_connection` — ``POST /v1/connections/{id}/configure``: the choice is
  checked against freshly fetched choices (422 naming ``config.<field>``); a
  ``needs_configuration`` connection is then created at Fivetran
  (:func:`app.connections.configuration.create_configured`, ``Idempotency-Key``), an existing
  one gets the new selection PATCHed onto its config.

Problems: ``409 invalid_connection_state`` (wrong state), ``409 not_configurable`` (no picker
for this source), ``409 needs_reauth`` (the provider refused the token / the refresh),
``409 access_token_expired`` (expired and owned by Fivetran), ``409 tokens_unavailable``,
``502 provider_list_failed`` (the provider's list call failed).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.callers.service import Caller
from app.connect.models import OAuthGrant
from app.connect.refresh import refresh_owned_grant
from app.connect.schemas import ConfigureIn, ConnectionOptions, PickerFieldOut, PickerOption
from app.connections import configuration, states
from app.connections import service as conn_service
from app.connections.models import Connection
from app.connections.schemas import ConnectionOut
from app.connections.service import OWNER as TOKENS_OWNER
from app.db import utcnow
from app.errors import Conflict, UpstreamError, invalid_fields
from app.kit import idempotency
from app.providers.picker import Option, PickerError, fetch_options
from app.providers.registry import Provider
from app.providers.spec import PickerSpec
from app.state import AppState
from app.vault.secret import Secret

log = logging.getLogger("pbf.connect")

#: An access token expiring within this margin is refreshed before use.
EXPIRY_MARGIN = timedelta(seconds=60)
#: States whose choices can be listed (and chosen).
OPTION_STATES = (states.NEEDS_CONFIGURATION, *configuration.RECONFIGURABLE)


def picker_for(app_state: AppState, provider_key: str | None, service: str) -> PickerSpec | None:
    """The post-consent configuration of a provider (``None``: the source needs no choice)."""
    registry = app_state.providers
    provider = registry.find(provider_key) if provider_key else None
    if provider is None:
        provider = registry.for_service(service)
    return provider.spec.picker if provider is not None else None


def _provider_and_picker(app_state: AppState, conn: Connection) -> tuple[Provider, PickerSpec]:
    registry = app_state.providers
    provider = registry.find(conn.provider_key) if conn.provider_key else None
    if provider is None:
        provider = registry.for_service(conn.service)
    if conn.auth_method != "oauth2" or provider is None or provider.spec.picker is None:
        raise Conflict(
            f"'{conn.service}' connections have no post-consent configuration",
            code="not_configurable",
        )
    return provider, provider.spec.picker


def _check_state(conn: Connection) -> None:
    if conn.state not in OPTION_STATES or (
        conn.state != states.NEEDS_CONFIGURATION and conn.fivetran_connection_id is None
    ):
        raise Conflict(
            f"The connection is '{conn.state}'; its choices can be listed and changed in "
            "'needs_configuration' and once it exists at Fivetran",
            code="invalid_connection_state",
        )


def _needs_reauth(conn: Connection) -> Conflict:
    return Conflict(
        "The provider refused the connection's token; re-authorize the connection "
        f"(POST /v1/connections/{conn.id}/reauthorize)",
        code="needs_reauth",
    )


async def _access_token(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> tuple[Secret, bool]:
    """(access token, whether it was just refreshed). Refreshes an expired token of a grant
    we own; never one Fivetran owns."""
    grant = await session.get(OAuthGrant, conn.id, populate_existing=True)
    if grant is not None and grant.needs_reauth:
        raise _needs_reauth(conn)
    token = await app_state.vault.get(
        session,
        end_user_id=conn.end_user_id,
        owner_type=TOKENS_OWNER,
        owner_id=conn.id,
        field="access_token",
    )
    expires_at = grant.access_token_expires_at if grant is not None else None
    expired = expires_at is not None and expires_at <= utcnow() + EXPIRY_MARGIN
    if token is not None and not expired:
        return token, False
    if conn.grant_handed_off_at is not None:
        raise Conflict(
            "The stored access token has expired and Fivetran now owns the grant (only "
            "Fivetran refreshes it); re-authorize the connection to list its choices",
            code="access_token_expired" if token is not None else "tokens_unavailable",
        )
    if grant is None or not grant.has_refresh_token:
        if token is None:
            raise Conflict(
                "The tokens of this connection are gone; re-authorize it",
                code="tokens_unavailable",
            )
        raise _needs_reauth(conn)
    outcome = await refresh_owned_grant(session, app_state, conn)
    return outcome.access_token, True


async def _fetch(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> tuple[PickerSpec, dict[str, list[Option]]]:
    provider, picker = _provider_and_picker(app_state, conn)
    _check_state(conn)
    provider = app_state.providers.get(provider.key)
    credentials = await app_state.providers.credentials(session, provider.key)
    token, refreshed = await _access_token(session, app_state, conn)

    async def call(access_token: Secret) -> dict[str, list[Option]]:
        return await fetch_options(
            provider,
            picker,
            access_token=access_token,
            credentials=credentials,
            transport=app_state.outbound_transport,
        )

    try:
        try:
            return picker, await call(token)
        except PickerError as exc:
            owned = conn.grant_handed_off_at is None
            if exc.kind != "unauthorized" or refreshed or not owned:
                raise
            grant = await session.get(OAuthGrant, conn.id)
            if grant is None or not grant.has_refresh_token:
                raise
            # The provider refused a token we thought valid: one refresh, one retry.
            outcome = await refresh_owned_grant(session, app_state, conn, reuse_within_seconds=0)
            return picker, await call(outcome.access_token)
    except PickerError as exc:
        log.warning(
            "provider list call failed",
            extra={"connection_id": conn.id, "provider": provider.key, "kind": exc.kind},
        )
        if exc.kind == "unauthorized":
            raise _needs_reauth(conn) from None
        raise UpstreamError(
            f"{provider.display_name} could not list the choices for '{exc.field}': "
            f"{exc.detail}; retry later",
            code="provider_list_failed",
        ) from None


async def connection_options(
    session: AsyncSession, app_state: AppState, conn: Connection
) -> ConnectionOptions:
    """``GET /v1/connections/{id}/options`` (see the module docstring)."""
    picker, options = await _fetch(session, app_state, conn)
    selected = {f.name: conn.config[f.name] for f in picker.fields if f.name in (conn.config or {})}
    return ConnectionOptions(
        connection_id=conn.id,
        state=conn.state,
        fields=[
            PickerFieldOut(name=f.name, title=f.title, multiple=f.multiple) for f in picker.fields
        ],
        options={
            name: [PickerOption(value=o.value, label=o.label) for o in values]
            for name, values in options.items()
        },
        selected=selected,
    )


def validate_choice(
    picker: PickerSpec, options: dict[str, list[Option]], config: dict[str, Any]
) -> dict[str, Any]:
    """The choice as Fivetran config (picker constants included); every bad field named in
    one 422 (``config.<field>`` / ``config.<field>[i]``)."""
    errors: list[dict[str, str]] = []
    known = {f.name for f in picker.fields}
    for name in config:
        if name not in known:
            errors.append(
                {
                    "field": f"config.{name}",
                    "code": "unknown_field",
                    "message": f"'{name}' is not chosen after consent (choose: "
                    + ", ".join(sorted(known))
                    + ")",
                }
            )
    out: dict[str, Any] = {}
    for item in picker.fields:
        where = f"config.{item.name}"
        allowed = {o.value for o in options.get(item.name, [])}
        if item.name not in config or config[item.name] in (None, "", []):
            errors.append({"field": where, "code": "required", "message": f"Choose {item.title}"})
            continue
        raw = config[item.name]
        values: list[Any] = raw if isinstance(raw, list) else [raw]
        if not item.multiple and isinstance(raw, list):
            errors.append(
                {"field": where, "code": "invalid_type", "message": f"{where} takes one value"}
            )
            continue
        bad = False
        for index, value in enumerate(values):
            at = f"{where}[{index}]" if isinstance(raw, list) else where
            if not isinstance(value, str):
                errors.append(
                    {"field": at, "code": "invalid_type", "message": f"{at} must be a string"}
                )
                bad = True
            elif value not in allowed:
                errors.append(
                    {
                        "field": at,
                        "code": "invalid_choice",
                        "message": f"{value!r} is not one of the choices the provider lists "
                        f"for {item.name}",
                    }
                )
                bad = True
        if len(set(map(str, values))) != len(values):
            errors.append(
                {"field": where, "code": "duplicate_value", "message": f"{where} repeats a value"}
            )
            bad = True
        if not bad:
            out[item.name] = list(values) if item.multiple else values[0]
    if errors:
        raise invalid_fields(errors, code="invalid_choice")
    return {**out, **picker.config}


SCOPE = "POST /v1/connections/{id}/configure"


async def configure_connection(
    session: AsyncSession,
    app_state: AppState,
    *,
    caller: Caller,
    conn: Connection,
    end_user_external_id: str,
    body: ConfigureIn,
    idempotency_key: str | None,
) -> JSONResponse:
    """``POST /v1/connections/{id}/configure`` (see the module docstring). A retry with the
    same ``Idempotency-Key`` returns the first answer, or finishes a create Fivetran left
    unfinished."""

    async def run(handle: idempotency.IdempotencyHandle) -> tuple[JSONResponse, Any]:
        target = conn
        if handle.resume_id is not None and target.state == states.CREATING:
            await conn_service.claim_for_resume(session, target)
            await conn_service.resume_connection(session, app_state, target)
        else:
            picker, options = await _fetch(session, app_state, target)
            choice = validate_choice(picker, options, body.config)
            if target.state == states.NEEDS_CONFIGURATION:
                target = await configuration.create_configured(
                    session,
                    app_state,
                    target,
                    choice=choice,
                    end_user_external_id=end_user_external_id,
                    idempotency=handle,
                )
            else:
                target = await configuration.change_selection(
                    session,
                    app_state,
                    target,
                    choice=choice,
                    end_user_external_id=end_user_external_id,
                )
        out = ConnectionOut.of(target, end_user_external_id).dump()
        return JSONResponse(out, status_code=200), out

    return await idempotency.run_create(
        session,
        caller_id=caller.key_id,
        scope=SCOPE.replace("{id}", conn.id),
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        ttl_hours=app_state.settings.api.idempotency_ttl_hours,
        create=run,
        status_code=200,
    )
