"""A **simulation** of the Fivetran REST API for sandbox mode and tests (never production).

:func:`mount_fivetran_simulator` mounts it at ``/sandbox/fivetran`` on the main app; see
:mod:`app.sandbox.fivetran.app` for what it simulates and its control API.

One simulator per sandbox: it lives in the ``pbf-headless serve --sandbox`` process, which
alone loads and saves its state (``<data_dir>/sandbox-state.json`` under an exclusive lock,
:mod:`app.sandbox.persistence`), so a restart keeps every group, connection and token. The
worker and ``onboarding resume`` never build a simulator of their own: they reach this one
over HTTP at ``public_base_url`` (:mod:`app.sandbox.remote`), so two processes can never
silently disagree about what "Fivetran" holds. Syncs finish by themselves after
``sandbox.sync_seconds`` (:mod:`app.sandbox.fivetran.syncs`).
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI

from app.providers.oauth1 import verify_token
from app.providers.registry import ProviderRegistry
from app.sandbox.fivetran.app import Simulator, create_simulator
from app.sandbox.fivetran.setup_tests import TokenChecker
from app.sandbox.oauth import introspect_at, introspect_token
from app.sandbox.saving import SaveBeforeAnswer, persistence_of

MOUNT_PATH = "/sandbox/fivetran"

__all__ = [
    "MOUNT_PATH",
    "Simulator",
    "create_simulator",
    "mount_fivetran_simulator",
    "sandbox_oauth_checker",
]


def sandbox_oauth_checker(app: FastAPI) -> TokenChecker:
    """Token checker of the simulator's setup tests.

    A token of a sandboxed provider is introspected at the sandbox OAuth server. A token of
    an operator-configured (real) provider is introspected at that provider's RFC 7662
    endpoint when it has one; otherwise the answer is ``None`` ("not checked"), which the
    setup test reports as such instead of failing a token it cannot know. OAuth 1.0a token
    credentials of a sandboxed X provider are checked with a signed request at the sandbox
    OAuth 1.0a server (``verify_credentials``).
    """

    async def check(service: str, token: str | Mapping[str, str]) -> bool | None:
        registry = getattr(app.state, "providers", None)
        if registry is None:
            return None
        if not isinstance(token, str):  # OAuth 1.0a token credentials (X / Twitter)
            return await _check_oauth1(app, registry, service, token)
        provider = registry.for_service(service)
        if provider is None:
            return None
        if provider.sandboxed:
            return await introspect_token(
                app.state.http, app.state.settings.sandbox_base_url, provider.key, token
            )
        provider = await registry.resolved(provider, app.state.http)  # RFC 8414 metadata
        url = provider.spec.introspection_url
        if not url or "{" in url:
            return None
        credentials = await registry.credentials(None, provider.key)
        return await introspect_at(app.state.http, url, provider.key, credentials, token)

    return check


async def _check_oauth1(
    app: FastAPI, registry: ProviderRegistry, service: str, values: Mapping[str, str]
) -> bool | None:
    """A signed request with the handed-over consumer and token credentials at the sandbox
    OAuth 1.0a server's protected resource (``None``: not a sandboxed provider)."""
    provider = registry.oauth1.for_service(service)
    if provider is None or provider.verify_url is None:
        return None
    if values["consumer_key"] != provider.credentials.client_id:
        return None  # another app's tokens (credential form): the sandbox cannot know them
    return await verify_token(
        url=provider.verify_url,
        consumer_key=values["consumer_key"],
        consumer_secret=values["consumer_secret"],
        oauth_token=values["oauth_token"],
        oauth_token_secret=values["oauth_token_secret"],
        transport=app.state.outbound_transport,
    )


def mount_fivetran_simulator(app: FastAPI) -> Simulator:
    """Mount the simulator at ``/sandbox/fivetran``; returns it (also ``app.state``)."""
    settings = app.state.settings
    sim_app = create_simulator(
        get_http=lambda: app.state.http,
        api_key=settings.fivetran.sandbox_key,
        api_secret=settings.fivetran.sandbox_secret.get_secret_value(),
        token_checker=sandbox_oauth_checker(app),
        sync_seconds=settings.sandbox.sync_seconds,
    )
    app.mount(MOUNT_PATH, SaveBeforeAnswer(sim_app, persistence_of(app)))
    simulator: Simulator = sim_app.state.simulator
    app.state.fivetran_simulator = simulator
    return simulator
