"""Connections authorized with OAuth 1.0a (X / Twitter): store the grant, create or
re-authorize the Fivetran connection.

The token credentials are kept like a credential form's auth block (the connection's
``auth`` config object): the non-secret ``auth.consumer_key`` in the stored config, the
secrets (``auth.oauth_token``, ``auth.oauth_token_secret``, ``auth.consumer_secret``) in the
vault under the connection's credential fields. So the body Fivetran gets is built by the same
code as every other connection's (:func:`app.connections.service.create_body`, which splits the
``auth`` object out), and a connection left ``creating`` resumes like any credential one.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import states
from app.connections.models import Connection
from app.connections.service import (
    OWNER,
    after_tests,
    apply_fivetran_status,
    create_authorized,
    create_body,
    credential_field,
    live_end_user,
    remote_id,
)
from app.db import utcnow
from app.errors import NotFound
from app.fivetran.errors import FivetranError, FivetranNotFound, fivetran_problem
from app.fivetran.payloads import build_auth_patch
from app.providers.oauth1 import OAuth1Provider, OAuth1Token
from app.sources.auth_forms import AUTH_KEY
from app.state import AppState
from app.vault.secret import Secret

log = logging.getLogger("pbf.connections.oauth1")

#: Auth-block paths kept in the vault (the consumer key is not a secret).
SECRET_PATHS = ("auth.consumer_secret", "auth.oauth_token", "auth.oauth_token_secret")


async def store_oauth1_grant(
    session: AsyncSession,
    app_state: AppState,
    *,
    connection: Connection,
    provider: OAuth1Provider,
    token: OAuth1Token,
) -> None:
    """Seal the token credentials in the vault and record the auth block's shape on the
    connection (flush only; the caller commits before any Fivetran call)."""
    auth = provider.fivetran_auth(token)
    for path in SECRET_PATHS:
        await app_state.vault.put(
            session,
            end_user_id=connection.end_user_id,
            owner_type=OWNER,
            owner_id=connection.id,
            field=credential_field(path),
            value=auth[path.removeprefix("auth.")],
        )
    config = {k: v for k, v in (connection.config or {}).items() if k != AUTH_KEY}
    config.update(provider.fivetran_config)
    config[AUTH_KEY] = {"consumer_key": auth["consumer_key"]}
    connection.config = config
    connection.secret_fields = list(SECRET_PATHS)
    connection.provider_key = provider.key
    # The account the provider named (X: user_id, screen_name), never a secret.
    connection.oauth_metadata = dict(token.metadata)
    connection.updated_at = utcnow()
    await session.flush()


def preview_config(app_state: AppState, service: str) -> dict[str, Any]:
    """Config additions of ``POST /v1/payloads/preview`` for an OAuth 1.0a source: the app's
    config fields and the auth block with placeholder tokens (masked like every secret)."""
    provider = app_state.providers.oauth1.for_service(service)
    if provider is None:
        return {}
    token = OAuth1Token(
        oauth_token=Secret("preview-oauth-token"),
        oauth_token_secret=Secret("preview-oauth-token-secret"),
    )
    return {**provider.fivetran_config, AUTH_KEY: provider.fivetran_auth(token)}


async def complete_oauth1(
    session: AsyncSession,
    app_state: AppState,
    *,
    connection: Connection,
    provider: OAuth1Provider,
    token: OAuth1Token,
) -> Connection:
    """Create the Fivetran connection (or PATCH the new auth block onto an existing one)
    once :func:`store_oauth1_grant` was committed. Same outcomes as
    :func:`app.connections.service.complete_oauth`."""
    conn = connection
    end_user = await live_end_user(session, app_state, conn)
    auth = provider.fivetran_auth(token)
    if conn.fivetran_connection_id is not None:
        await _reauthorize(session, app_state, conn, auth=auth)
        return conn
    source = app_state.sources.get(conn.service, "oauth1")
    await create_authorized(
        session,
        app_state,
        conn,
        end_user,
        body=lambda: create_body(source, conn, {**conn.config, AUTH_KEY: auth}, auth=None),
    )
    return conn


async def _reauthorize(
    session: AsyncSession, app_state: AppState, conn: Connection, *, auth: dict[str, str]
) -> None:
    client = app_state.fivetran
    try:
        await client.update_connection(remote_id(conn), build_auth_patch(conn.service, auth=auth))
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
    await after_tests(session, app_state, conn, data, reason="reauthorized")
