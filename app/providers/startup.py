"""Build the provider registry from the shipped catalog and the operator configuration.

``start_providers(app, settings)`` runs in the lifespan and sets ``app.state.providers``;
``build_registry(settings)`` does the pure work (no I/O beyond reading the packaged catalog
and configured secret/provider files) and raises
:class:`~app.providers.errors.ProviderConfigError` listing every problem at once.

Sandbox mode: every provider without an operator-configured app points at the embedded
sandbox authorization server (``{public_base_url}/sandbox/oauth/{key}/…``, or the separate
counterparties process at ``sandbox.counterparties_url``) with generated
credentials (client id ``sandbox-<key>``; a secret containing ``+``, ``%`` and ``:``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import yaml
from fastapi import FastAPI
from pydantic import ValidationError

from app.config import OAuthAppSettings, Settings
from app.fivetran.index import all_services
from app.providers.catalog_data import load_catalog_data, load_verification
from app.providers.discovery import MetadataCache
from app.providers.errors import ProviderConfigError
from app.providers.oauth1 import OAUTH1_KEYS, build_oauth1_registry
from app.providers.overrides import apply_overrides, override_values
from app.providers.registry import (
    SANDBOX_PATH,
    AppConfig,
    Provider,
    ProviderRegistry,
    sandbox_client_id,
    sandbox_client_secret,
)
from app.providers.spec import ProviderSpec, Verification
from app.providers.validation import check_issuers, check_spec
from app.vault.secret import Secret

log = logging.getLogger("pbf.providers")


def _parse(origin: str, raw: dict[str, Any], problems: list[str]) -> dict[str, ProviderSpec]:
    specs: dict[str, ProviderSpec] = {}
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            problems.append(f"{origin} provider {key!r}: entry must be a mapping")
            continue
        try:
            specs[str(key)] = ProviderSpec.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ".".join(str(p) for p in err["loc"]) or "(entry)"
                problems.append(f"{origin} provider {key!r}: {loc}: {err['msg']}")
    return specs


@cache
def catalog_specs() -> tuple[Mapping[str, ProviderSpec], tuple[str, ...]]:
    """The shipped catalog as validated specs, with its problems (empty when it is sound).

    A pure function of the packaged files, so parsed once per process; every registry built
    in the process shares these spec objects (pydantic models that are frozen: a registry
    that changes one — overrides, sandbox endpoints — gets a ``model_copy``).
    """
    problems: list[str] = []
    specs = _parse("catalog", load_catalog_data(), problems)
    return MappingProxyType(specs), tuple(problems)


@cache
def verification_facts() -> Mapping[str, Verification]:
    """``{service: Verification}`` of the facts file, parsed once per process."""
    return MappingProxyType(
        {s: Verification.model_validate(v) for s, v in load_verification().items()}
    )


def _known_services() -> set[str] | None:
    services = set(all_services())
    return services or None


def _custom_provider_data(settings: Settings, problems: list[str]) -> dict[str, Any]:
    raw: dict[str, Any] = dict(settings.oauth.providers)
    path = settings.oauth.providers_file
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"PBF_OAUTH__PROVIDERS_FILE {path}: cannot be read ({exc})")
            loaded = {}
        if not isinstance(loaded, dict):
            problems.append(f"PBF_OAUTH__PROVIDERS_FILE {path}: must be a mapping")
            loaded = {}
        for key, entry in loaded.items():
            if key in raw:
                problems.append(f"custom provider {key!r} is defined twice (env and file)")
            raw[key] = entry
    return raw


def _client_secret(key: str, app: OAuthAppSettings, problems: list[str]) -> Secret | None:
    env = f"PBF_OAUTH__APPS__{key.upper()}"
    if app.client_secret_file is not None:
        try:
            value = Path(app.client_secret_file).read_text("utf-8").strip()
        except OSError:
            problems.append(f"{env}__CLIENT_SECRET_FILE {app.client_secret_file}: cannot be read")
            return None
        if not value:
            problems.append(f"{env}__CLIENT_SECRET_FILE {app.client_secret_file}: is empty")
            return None
        return Secret(value)
    if app.client_secret is not None and app.client_secret.get_secret_value():
        return Secret(app.client_secret.get_secret_value())
    problems.append(
        f"{env}__CLIENT_SECRET (or __CLIENT_SECRET_FILE, or __CLIENT_SECRET_IN_VAULT=true) "
        "is not set"
    )
    return None


def sandbox_list_url(base: str, url: str) -> str:
    """A provider list URL served by the sandbox's simulated copy:
    ``https://graph.facebook.com/v22.0/me/adaccounts`` →
    ``<base>/api/graph.facebook.com/v22.0/me/adaccounts``."""
    parts = urlsplit(url)
    return f"{base}/api/{parts.netloc}{parts.path}"


def sandbox_spec(key: str, spec: ProviderSpec, public_base_url: str) -> ProviderSpec:
    """The same provider, pointed at the embedded sandbox authorization server."""
    base = f"{public_base_url.rstrip('/')}{SANDBOX_PATH}/{key}"
    authorize = f"{base}/authorize"
    query = spec.sandbox.get("authorize_query")
    if isinstance(query, str) and query:
        authorize = f"{authorize}?{query}"
    picker = spec.picker
    if picker is not None:
        picker = picker.model_copy(
            update={
                "fields": [
                    f.model_copy(
                        update={
                            "request": f.request.model_copy(
                                update={"url": sandbox_list_url(base, f.request.url)}
                            )
                        }
                    )
                    for f in picker.fields
                ]
            }
        )
    identity = spec.identity
    if identity.source == "endpoint" and identity.url:
        # The identity call goes to the sandbox server too, under /api + the real path.
        real = urlsplit(identity.url)
        path = real.path + (f"?{real.query}" if real.query else "")
        identity = identity.model_copy(update={"url": f"{base}/api{path}"})
    return spec.model_copy(
        update={
            "picker": picker,
            "identity": identity,
            "issuer": base,
            "authorization_url": authorize,
            "token_url": f"{base}/token",
            "revocation_url": f"{base}/revoke",
            "introspection_url": f"{base}/introspect",
            "authorization_response_iss": True,
        }
    )


@lru_cache(maxsize=32)
def _sandboxed_catalog(sandbox_base_url: str) -> Mapping[str, ProviderSpec]:
    """Every shipped provider pointed at the sandbox server at ``sandbox_base_url`` (a pure
    function of the catalog and the URL: built once per URL and process)."""
    specs, _ = catalog_specs()
    return MappingProxyType(
        {key: sandbox_spec(key, spec, sandbox_base_url) for key, spec in specs.items()}
    )


def replaced_catalog_providers(
    catalog: dict[str, ProviderSpec], custom: dict[str, ProviderSpec], problems: list[str]
) -> list[str]:
    """Catalog providers that custom providers replace explicitly (``replaces: <key>``).

    A custom provider for a service some catalog provider serves must name it: it then
    replaces it (logged at startup). Without ``replaces`` startup refuses — a custom provider
    is never silently shadowed by the catalog one (nor the other way round).
    """
    by_service: dict[str, str] = {spec.fivetran_service: key for key, spec in catalog.items()}
    replaced: list[str] = []
    claimed: dict[str, str] = {}
    for key, spec in custom.items():
        service = spec.fivetran_service
        if service in claimed:
            problems.append(
                f"custom provider {key!r}: service {service!r} already has the custom "
                f"provider {claimed[service]!r}"
            )
            continue
        claimed[service] = key
        existing = by_service.get(service)
        if spec.replaces is None:
            if existing is not None and existing not in custom:
                problems.append(
                    f"custom provider {key!r} is for {service!r}, which the catalog provider "
                    f"{existing!r} serves: set 'replaces: {existing}' to replace it, or "
                    f"override the catalog provider with PBF_OAUTH__APPS__{existing.upper()}__*"
                )
            continue
        if spec.replaces != existing:
            problems.append(
                f"custom provider {key!r}: replaces {spec.replaces!r}, but the catalog "
                f"provider of {service!r} is {existing!r}"
            )
            continue
        log.info(
            "custom provider replaces a catalog provider",
            extra={"provider": key, "replaces": existing, "service": service},
        )
        replaced.append(existing)
    return replaced


def build_registry(settings: Settings) -> ProviderRegistry:
    """Catalog + configuration → validated :class:`ProviderRegistry` (or every problem)."""
    shipped, shipped_problems = catalog_specs()
    problems: list[str] = list(shipped_problems)
    catalog = dict(shipped)
    custom = _parse("custom", _custom_provider_data(settings, problems), problems)
    for key in custom:
        if key in catalog:
            problems.append(
                f"custom provider {key!r} clashes with the catalog provider of that name; "
                f"use PBF_OAUTH__APPS__{key.upper()}__* overrides for catalog providers"
            )
    for key in replaced_catalog_providers(catalog, custom, problems):
        del catalog[key]
    specs: dict[str, ProviderSpec] = {**catalog, **custom}
    origins = {k: ("config" if k in custom else "catalog") for k in specs}

    apps: dict[str, AppConfig] = {}
    #: Providers whose issuer the operator configured: RFC 8414 metadata is discovered.
    discover: set[str] = {k for k, s in specs.items() if s.discover_metadata}
    oauth1_apps: dict[str, tuple[str, Secret]] = {}
    for key, app_settings in settings.oauth.apps.items():
        if key in OAUTH1_KEYS and key not in specs:  # an OAuth 1.0a consumer (X / Twitter)
            oauth1_secret = _oauth1_app(key, app_settings, problems)
            if oauth1_secret is not None:
                oauth1_apps[key] = oauth1_secret
            continue
        if key not in specs:
            problems.append(
                f"PBF_OAUTH__APPS__{key.upper()}: there is no provider {key!r} "
                "(neither in the catalog nor a custom provider)"
            )
            continue
        if not app_settings.client_id:
            problems.append(f"PBF_OAUTH__APPS__{key.upper()}__CLIENT_ID is not set")
            continue
        secret: Secret | None = None
        if app_settings.client_secret_in_vault and (
            app_settings.client_secret is not None or app_settings.client_secret_file is not None
        ):
            problems.append(
                f"PBF_OAUTH__APPS__{key.upper()}: set only one of __CLIENT_SECRET, "
                "__CLIENT_SECRET_FILE and __CLIENT_SECRET_IN_VAULT"
            )
            continue
        if not app_settings.client_secret_in_vault:
            secret = _client_secret(key, app_settings, problems)
            if secret is None:
                continue
        overrides = override_values(key, app_settings, problems)
        specs[key] = apply_overrides(key, specs[key], overrides, problems)
        if "issuer" in overrides or origins[key] == "config":
            discover.add(key)
        for name in specs[key].verification.unknown:
            if name not in overrides:
                problems.append(
                    f"PBF_OAUTH__APPS__{key.upper()}__{name.upper()} is required: the catalog "
                    f"does not know {key}'s {name} (its value is a placeholder)"
                )
        apps[key] = AppConfig(
            client_id=app_settings.client_id,
            client_secret=secret,
            extras={k: Secret(v.get_secret_value()) for k, v in app_settings.extras.items()},
        )

    sandboxed: set[str] = set()
    if settings.is_sandbox:
        ready = _sandboxed_catalog(settings.sandbox_base_url)
        for key in specs:
            if key not in apps:
                # A shipped spec left as it is has its sandboxed copy built already.
                same = specs[key] is shipped.get(key)
                specs[key] = (
                    ready[key] if same else sandbox_spec(key, specs[key], settings.sandbox_base_url)
                )
                apps[key] = AppConfig(
                    client_id=sandbox_client_id(key),
                    client_secret=Secret(sandbox_client_secret(key)),
                    generated=True,
                )
                sandboxed.add(key)

    allow_http = settings.is_sandbox or settings.oauth.allow_insecure_loopback
    known = _known_services()
    for key, spec in specs.items():
        # Sandboxed providers point at our own sandbox server (sandbox_base_url, which
        # may be plain http in sandbox mode): their URLs are not third-party endpoints.
        problems.extend(
            check_spec(
                key,
                spec,
                allow_loopback_http=allow_http,
                known_services=known,
                check_urls=key not in sandboxed,
            )
        )
    problems.extend(check_issuers(specs))
    if problems:
        raise ProviderConfigError(problems)
    for key in discover - sandboxed:
        specs[key] = specs[key].model_copy(update={"discover_metadata": True})
    providers = {
        key: Provider(
            key=key,
            spec=spec,
            sandboxed=key in sandboxed,
            origin=origins[key],
            timeout_seconds=settings.oauth.token_timeout_seconds,
        )
        for key, spec in specs.items()
    }
    oauth1 = build_oauth1_registry(
        is_sandbox=settings.is_sandbox,
        public_base_url=settings.public_base_url,
        apps=oauth1_apps,
        sandbox_credentials={
            key: (sandbox_client_id(key), Secret(sandbox_client_secret(key))) for key in OAUTH1_KEYS
        },
        verification=verification_facts(),
        timeout_seconds=settings.oauth.token_timeout_seconds,
    )
    return ProviderRegistry(providers, apps, oauth1=oauth1)


def _oauth1_app(key: str, app: OAuthAppSettings, problems: list[str]) -> tuple[str, Secret] | None:
    """(consumer key, consumer secret) of an OAuth 1.0a app; only the credentials (and no
    endpoint override) are accepted for these providers."""
    env = f"PBF_OAUTH__APPS__{key.upper()}"
    unsupported = sorted(
        name
        for name in (*type(app).model_fields, *(app.model_extra or {}))
        if name
        not in (
            "client_id",
            "client_secret",
            "client_secret_file",
            "client_secret_in_vault",
            "extras",
        )
        and getattr(app, name, None) not in (None, [], {})
    )
    if unsupported:
        problems.append(
            f"{env}: {', '.join(n.upper() for n in unsupported)} cannot be set for an OAuth 1.0a "
            "provider (only __CLIENT_ID and __CLIENT_SECRET / __CLIENT_SECRET_FILE)"
        )
        return None
    if app.client_secret_in_vault:
        problems.append(f"{env}__CLIENT_SECRET_IN_VAULT is not supported for OAuth 1.0a apps")
        return None
    if not app.client_id:
        problems.append(f"{env}__CLIENT_ID is not set")
        return None
    secret = _client_secret(key, app, problems)
    return (app.client_id, secret) if secret is not None else None


async def start_providers(app: FastAPI, settings: Settings) -> ProviderRegistry:
    """Lifespan hook: build and validate the registry, publish ``app.state.providers``."""
    registry = build_registry(settings)
    registry.bind_vault(lambda: app.state.vault)
    registry.metadata = MetadataCache(
        allow_http=settings.is_sandbox or settings.oauth.allow_insecure_loopback
    )
    app.state.providers = registry
    # authlib logs token values at DEBUG (server "Issue token", client "Using code_verifier"):
    # keep it at INFO or above whatever the service's log level (R16).
    authlib_logger = logging.getLogger("authlib")
    if authlib_logger.getEffectiveLevel() < logging.INFO:
        authlib_logger.setLevel(logging.INFO)
    log.info(
        "providers ready",
        extra={
            "providers": len(registry.all()),
            "configured": len(registry.configured()),
            "sandboxed": len(registry.sandboxed()),
        },
    )
    return registry
