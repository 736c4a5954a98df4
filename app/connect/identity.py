"""The account check of a connect flow: right after the code exchange, before anything else.

:func:`check_account` resolves the provider-side account of the fresh tokens
(:mod:`app.providers.identity`) and decides, before the tokens are stored or anything reaches
Fivetran:

* **re-authorization** of a connection that recorded another account →
  ``PBF_CONNECT__REAUTH_OTHER_ACCOUNT``: ``refuse`` (default; ``account_mismatch``) or
  ``allow`` (the connection moves to the new account);
* an account the same end-user already has in a **non-deleted connection of the same
  service** ("already connected": any state but ``deleted``, the connection itself excluded)
  → ``PBF_CONNECT__DUPLICATE_ACCOUNT``: ``refuse`` (default; ``account_already_connected``,
  the session names the connection holding it), ``flag`` (created with ``duplicate_of``) or
  ``return_existing`` (the session completes with the existing connection; a
  re-authorization is refused instead);
* a declared identity source that fails → ``identity_unavailable`` (fail closed).

Refused or superseded tokens are never stored nor handed to Fivetran; they are revoked at
the provider where it has a revocation endpoint — for a *different* account always, for the
*same* account (duplicate, unidentifiable) only where revoking one token leaves the other
grants alone (``revoke_replaced_refresh_token``; not Google). A provider whose identity source
is ``none`` skips every check. Account ids and labels are personal data: never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.connect.models import ConnectSession
from app.connections.models import Connection
from app.connections.service import live_connection_with_account
from app.events.outbox import emit
from app.providers.client import revoke
from app.providers.errors import OAuthProviderError
from app.providers.identity import AccountIdentity, IdentityError, resolve_identity
from app.providers.registry import Provider
from app.providers.tokens import TokenResult
from app.state import AppState

log = logging.getLogger("pbf.connect.identity")

ACCOUNT_MISMATCH = "account_mismatch"
ALREADY_CONNECTED = "account_already_connected"
IDENTITY_UNAVAILABLE = "identity_unavailable"
#: Session error codes this module adds to the browser allow-list.
IDENTITY_ERROR_CODES = frozenset({ACCOUNT_MISMATCH, ALREADY_CONNECTED, IDENTITY_UNAVAILABLE})


@dataclass(frozen=True)
class AccountAccepted:
    """Go on: record ``identity`` (``None``: the provider has no identity source)."""

    identity: AccountIdentity | None
    duplicate_of: str | None = None


@dataclass(frozen=True)
class AccountRefused:
    """Stop: fail the session with ``error`` (tokens already revoked or discarded)."""

    error: str
    existing_connection_id: str | None = None


@dataclass(frozen=True)
class ReturnExisting:
    """Stop: complete the session with ``connection_id`` (tokens already discarded)."""

    connection_id: str


AccountDecision = AccountAccepted | AccountRefused | ReturnExisting


async def discard_tokens(
    session: AsyncSession,
    app_state: AppState,
    *,
    provider: Provider,
    token_result: TokenResult,
    inputs: Mapping[str, str],
    other_account: bool,
) -> bool:
    """Revoke tokens we will never store (see the module docstring for when); True when the
    provider confirmed the revocation. Failures are logged (without the token) and ignored:
    the tokens are dropped either way."""
    if not other_account and not provider.spec.revoke_replaced_refresh_token:
        return False
    token = token_result.refresh_token or token_result.access_token
    if token is None:
        return False
    hint = "refresh_token" if token_result.refresh_token is not None else "access_token"
    try:
        endpoint = provider.endpoints(inputs).revocation_url
        credentials = await app_state.providers.credentials(session, provider.key)
        return await revoke(
            provider,
            token,
            revocation_endpoint=endpoint,
            credentials=credentials,
            token_type_hint=hint,
            transport=app_state.outbound_transport,
        )
    except (OAuthProviderError, LookupError, ValueError) as exc:
        log.warning(
            "refused tokens could not be revoked",
            extra={"provider": provider.key, "error": getattr(exc, "error_code", "error")},
        )
        return False


async def _event(
    session: AsyncSession,
    row: ConnectSession,
    kind: str,
    *,
    connection_id: str,
    data: dict[str, Any],
) -> None:
    await emit(
        session,
        kind=kind,
        data={"session_id": row.id, "service": row.service, **data},
        connection_id=connection_id,
        end_user_external_id=row.end_user_external_id,
    )


async def check_account(
    session: AsyncSession,
    app_state: AppState,
    *,
    row: ConnectSession,
    provider: Provider,
    token_result: TokenResult,
    callback_params: Mapping[str, str],
) -> AccountDecision:
    """The account decision for a fresh code exchange (flush only; see the module docstring).

    Runs before the tokens are stored: a refusal or ``return_existing`` leaves nothing of
    the new grant behind except the events it emits.
    """
    settings = app_state.settings.connect
    inputs = dict((row.config or {}).get("inputs") or {})
    try:
        identity = await resolve_identity(
            provider,
            token_result,
            callback_params=callback_params,
            inputs=inputs,
            transport=app_state.outbound_transport,
        )
    except IdentityError as exc:
        log.warning(
            "account identity unavailable", extra={"session_id": row.id, "reason": exc.reason}
        )
        await discard_tokens(
            session,
            app_state,
            provider=provider,
            token_result=token_result,
            inputs=inputs,
            other_account=False,
        )
        return AccountRefused(IDENTITY_UNAVAILABLE)
    if identity is None:
        return AccountAccepted(None)

    connection = await session.get(Connection, row.connection_id)
    recorded = connection.account_id if connection is not None else None
    changed = row.reauthorization and recorded is not None and recorded != identity.id
    if changed:
        refuse = settings.reauth_other_account == "refuse"
        revoked = False
        if refuse:
            revoked = await discard_tokens(
                session,
                app_state,
                provider=provider,
                token_result=token_result,
                inputs=inputs,
                other_account=True,
            )
        await _event(
            session,
            row,
            "connection.account_mismatch",
            connection_id=row.connection_id,
            data={"action": "refused" if refuse else "allowed", "revoked_at_provider": revoked},
        )
        log.info(
            "re-authorization with another account",
            extra={"session_id": row.id, "action": "refused" if refuse else "allowed"},
        )
        if refuse:
            return AccountRefused(ACCOUNT_MISMATCH)

    if row.reauthorization and recorded == identity.id:
        return AccountAccepted(
            identity, duplicate_of=connection.duplicate_of if connection else None
        )

    existing = await live_connection_with_account(
        session,
        end_user_id=row.end_user_id,
        service=row.service,
        account_id=identity.id,
        exclude_id=row.connection_id,
    )
    if existing is None:
        return AccountAccepted(identity)
    mode = settings.duplicate_account
    if mode == "return_existing" and row.reauthorization:
        mode = "refuse"  # a re-authorization cannot turn into another connection
    revoked = False
    if mode != "flag":
        revoked = await discard_tokens(
            session,
            app_state,
            provider=provider,
            token_result=token_result,
            inputs=inputs,
            other_account=False,
        )
    await _event(
        session,
        row,
        "connection.duplicate_account",
        connection_id=row.connection_id,
        data={
            "mode": mode,
            "existing_connection_id": existing.id,
            "revoked_at_provider": revoked,
        },
    )
    log.info("account already connected", extra={"session_id": row.id, "mode": mode})
    if mode == "flag":
        return AccountAccepted(identity, duplicate_of=existing.id)
    if mode == "return_existing":
        return ReturnExisting(existing.id)
    return AccountRefused(ALREADY_CONNECTED, existing_connection_id=existing.id)


def record_account(
    connection: Connection, identity: AccountIdentity | None, duplicate_of: str | None
) -> None:
    """Store the accepted account on the connection (in the tokens' transaction)."""
    if identity is None:
        return
    connection.account_id = identity.id
    connection.account_label = identity.label
    connection.duplicate_of = duplicate_of
