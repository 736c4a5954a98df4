"""Revoke the refresh token a re-authorization replaced (RFC 7009).

A re-authorization obtains a new grant; the old refresh token would otherwise stay valid at
the provider although nothing uses it any more. When the new tokens are stored, the old
refresh token is kept sealed in the vault (field ``replaced_refresh_token``); once Fivetran
accepted the new auth block and its setup tests passed, it is revoked at the provider's
revocation endpoint and shredded. Providers where revoking one token ends the whole
authorization (Google) opt out with ``revoke_replaced_refresh_token: false``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.models import Connection
from app.errors import AppError
from app.providers.client import revoke
from app.providers.errors import OAuthProviderError
from app.state import AppState
from app.vault import Secret

log = logging.getLogger("pbf.connect")
OWNER = "connection"
FIELD = "replaced_refresh_token"


async def keep_replaced_refresh_token(
    session: AsyncSession,
    app_state: AppState,
    *,
    end_user_id: str,
    connection_id: str,
    new_token: Secret | None,
) -> None:
    """Before new tokens overwrite the old ones: keep the old refresh token for revocation."""
    vault = app_state.vault
    old = await vault.get(
        session, end_user_id=end_user_id, owner_type=OWNER, owner_id=connection_id,
        field="refresh_token",
    )  # fmt: skip
    if old is None or (new_token is not None and old.reveal() == new_token.reveal()):
        return
    await vault.put(
        session,
        end_user_id=end_user_id,
        owner_type=OWNER,
        owner_id=connection_id,
        field=FIELD,
        value=old,
    )


async def revoke_replaced_refresh_token(
    session: AsyncSession, app_state: AppState, conn: Connection, *, inputs: dict[str, Any]
) -> bool:
    """Revoke and shred the kept refresh token; True when the provider confirmed it."""
    vault = app_state.vault
    old = await vault.get(
        session, end_user_id=conn.end_user_id, owner_type=OWNER, owner_id=conn.id, field=FIELD
    )
    if old is None:
        return False
    revoked = False
    registry = app_state.providers
    provider = registry.find(conn.provider_key) if conn.provider_key else None
    if provider is not None and provider.spec.revoke_replaced_refresh_token:
        try:
            endpoint = provider.endpoints(inputs).revocation_url
            revoked = await revoke(
                provider,
                old,
                revocation_endpoint=endpoint,
                credentials=await registry.credentials(session, provider.key),
                transport=getattr(app_state, "outbound_transport", None),
                timeout_seconds=provider.timeout_seconds,
            )
        except (AppError, OAuthProviderError) as exc:
            # The new grant works; a refused revocation is logged, never fails the re-auth.
            log.warning(
                "replaced refresh token could not be revoked",
                extra={"connection_id": conn.id, "error_type": type(exc).__name__},
            )
    await vault.delete(session, owner_type=OWNER, owner_id=conn.id, field=FIELD)
    if revoked:
        log.info("replaced refresh token revoked", extra={"connection_id": conn.id})
    return revoked
