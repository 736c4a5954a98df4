"""The sources catalog: what this deployment can onboard headlessly, with form schemas.

Generated from Fivetran's definition (``app.fivetran.index``) and the OAuth provider catalog
(the provider registry):

* a service with an API ``auth`` block and a **configured** OAuth provider → ``oauth2``;
* a service without an ``auth`` block whose config carries secret fields (API keys,
  passwords, private keys) → ``credentials``;
* a service no other way reaches → ``connect_card``: services Fivetran lets authorize only
  through its own Connect Card (no API ``auth`` block and no credential fields: slack,
  mailchimp …; or documented so despite app fields: xero, :data:`CARD_ONLY`), ``auth``-only
  services without a configured provider or whose ``auth`` block takes no token, and
  file/table-group services. We create the connection (paused, without
  auth) and hand the end-user Fivetran's card, which redirects back to our callback
  (:mod:`app.connect.card`). With ``onboarding.connect_card: all`` every service is also
  offered by card (after its other ways). Each card item carries a ``reason``.

``config_schema`` is a JSON Schema of the fields the end-user fills: Fivetran's config fields
minus the ones we set ourselves (schema naming, auth, read-only fields, the fields the provider
mapping fills) plus the provider's own inputs (subdomain, shop, login host …). Secrets are
``writeOnly`` + ``format: password``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from app.config import Settings
from app.errors import NotFound, invalid_fields
from app.fivetran.index import all_services, get_service
from app.fivetran.secret_paths import secret_patterns
from app.providers.catalog_data import credential_services
from app.providers.oauth1 import OAuth1Provider
from app.providers.registry import Provider, ProviderRegistry
from app.providers.spec import Verification
from app.sources import forms
from app.sources.auth_forms import add_auth_block
from app.sources.categories import category_of, icon_url

#: Fields the platform sets itself, never the end-user.
PLATFORM_FIELDS = frozenset(
    {"schema", "schema_prefix", "table", "table_group_name", "auth", "public_key"}
)
#: For OAuth sources, config fields that select another authentication path.
OAUTH_EXCLUDED_FIELDS = frozenset(
    {"authentication_method", "auth_method", "auth_type", "auth_mode", "authorization_method"}
)
#: For OAuth sources, config fields of the other authorization paths (app credentials, API
#: users, certificates) that an end-user authorizing with OAuth never fills.
OAUTH_OTHER_PATH_FIELDS = frozenset(
    {"client_id", "app_url", "username", "user", "certificate", "client_certificate", "email"}
)


@dataclass(frozen=True)
class Source:
    """One onboardable service."""

    service: str
    name: str
    auth_method: str  # "oauth2" | "oauth1" | "credentials" | "connect_card"
    config_schema: dict[str, Any]
    scopes: list[str] | None = None
    provider_key: str | None = None
    secret_fields: frozenset[str] = field(default_factory=frozenset)
    fivetran_fields: frozenset[str] = field(default_factory=frozenset)
    input_fields: frozenset[str] = field(default_factory=frozenset)
    table_name: str | None = None
    category: str = "application"
    icon_url: str | None = None
    #: Verification of the provider facts (None for plain credential sources).
    verification: Verification | None = None
    #: The stored config carries Fivetran's ``auth`` block under ``auth`` (filled by the
    #: credential form, or by the OAuth 1.0a flow's tokens); split out of the Fivetran body.
    fills_auth: bool = False
    #: Why this service is offered by Fivetran's Connect Card (``connect_card`` only).
    reason: str | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.service,
            "name": self.name,
            "auth_method": self.auth_method,
            "category": self.category,
            "icon_url": self.icon_url,
            "required_source": self.config_schema.get("x-required-source", "derived"),
            "config_schema": self.config_schema,
        }
        if self.auth_method in ("oauth2", "oauth1"):
            out["scopes"] = list(self.scopes or [])
        if self.reason is not None:
            out["reason"] = self.reason
        if self.verification is not None:
            out.update(self.verification.public())
        return out


def _display_name(service: str) -> str:
    return " ".join(part.capitalize() for part in service.split("_"))


def _provider_inputs(provider: Provider) -> tuple[dict[str, Any], list[str]]:
    """The provider's end-user inputs as JSON-Schema properties + required names."""
    inputs = getattr(provider, "inputs", None)
    if isinstance(inputs, dict):  # already a JSON Schema fragment
        return dict(inputs.get("properties", {})), list(inputs.get("required", []))
    props: dict[str, Any] = {}
    required: list[str] = []
    for item in inputs or []:
        get = item.get if isinstance(item, dict) else (lambda k, _i=item: getattr(_i, k, None))
        name = get("name")
        if not name:
            continue
        prop: dict[str, Any] = {"type": "string"}
        for key, target in (
            ("title", "title"),
            ("description", "description"),
            ("pattern", "pattern"),
            ("default", "default"),
            ("enum", "enum"),
            ("max_length", "maxLength"),
            ("examples", "examples"),
        ):
            value = get(key)
            if value not in (None, [], ""):
                prop[target] = value
        props[name] = prop
        if get("required") and get("default") in (None, ""):
            required.append(name)
    return props, required


def _provider_set_fields(provider: Provider | OAuth1Provider | None) -> set[str]:
    """Config fields the provider mapping fills from the token response or app settings."""
    for path in ("fivetran_config_fields", "spec.fivetran.config", "fivetran.config"):
        obj: Any = provider
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return {str(k).split(".")[0] for k in obj}
    return set()


def _source(
    service: str,
    provider: Provider | OAuth1Provider | None,
    *,
    auth_method: str,
    settings: Settings | None,
) -> Source:
    spec = get_service(service)
    assert spec is not None
    form_auth = credential_services().get(service) if auth_method == "credentials" else None
    # Top-level fields holding a secret anywhere (``pats``, ``secrets_list``, ``password``).
    secret_names = {pattern[0] for pattern in secret_patterns(service)}
    excluded = set(PLATFORM_FIELDS - {"auth"}) | set(spec.readonly_config)
    if auth_method in ("oauth2", "oauth1"):
        excluded |= (
            OAUTH_EXCLUDED_FIELDS
            | OAUTH_OTHER_PATH_FIELDS
            | secret_names
            | _provider_set_fields(provider)
            | {"auth"}
        )
    schema = forms.build_form(
        spec, excluded=excluded, credentials=auth_method == "credentials", secret=secret_names
    )
    properties: dict[str, Any] = schema["properties"]
    input_props: dict[str, Any] = {}
    scopes: list[str] | None = None
    name = _display_name(service)
    provider_key = None
    if isinstance(provider, Provider) and auth_method == "oauth2":
        input_props, input_required = _provider_inputs(provider)
        for key, prop in input_props.items():
            if key not in properties:
                properties[key] = prop
                schema["x-order"].insert(0, key)
                if schema["x-groups"] and schema["x-groups"][0]["id"] == "connection":
                    schema["x-groups"][0]["fields"].insert(0, key)
                else:
                    schema["x-groups"].insert(
                        0, {"id": "connection", "title": "Connection", "fields": [key]}
                    )
        required = list(schema.get("required", []))
        required += [n for n in input_required if n not in required]
        if required:
            schema["required"] = required
        scopes = list(getattr(provider, "scopes", None) or [])
        name = getattr(provider, "display_name", None) or name
        provider_key = getattr(provider, "key", None)
    if form_auth is not None:  # the Fivetran auth block, filled by the form (``auth``)
        add_auth_block(schema, spec, form_auth.auth_fields)
    verification = None
    if auth_method == "oauth2" and isinstance(provider, Provider):
        verification = provider.spec.verification
    elif auth_method == "oauth1" and isinstance(provider, OAuth1Provider):
        verification = provider.verification
        name = provider.display_name
        provider_key = provider.key
        scopes = []
        # The flow sets these from the app (e.g. twitter_ads is_custom_api_credentials).
        for key in provider.fivetran_config:
            properties.pop(key, None)
            schema["x-order"] = [k for k in schema["x-order"] if k != key]
            for group in schema["x-groups"]:
                group["fields"] = [k for k in group["fields"] if k != key]
            if key in schema.get("required", []):
                schema["required"] = [k for k in schema["required"] if k != key]
    elif form_auth is not None:
        verification = form_auth.verification
        name = form_auth.display_name
    return Source(
        service=service,
        name=name,
        auth_method=auth_method,
        config_schema=schema,
        scopes=scopes,
        provider_key=provider_key,
        secret_fields=frozenset(n for n in secret_names if n in properties),
        fivetran_fields=frozenset(n for n in properties if n in spec.config_fields),
        input_fields=frozenset(input_props),
        table_name=service
        if spec.schema_format in ("schema_table", "schema_table_group")
        else None,
        category=category_of(service),
        icon_url=icon_url(service, settings),
        verification=verification,
        fills_auth=form_auth is not None or auth_method == "oauth1",
    )


#: The ``reason`` of each kind of card-offered source (``connect_card`` items).
CARD_REASONS = {
    "card_only": "Fivetran authorizes this service only through its Connect Card: its API "
    "takes no credentials that sign in to it",
    "no_provider": "No OAuth app is configured here for this service; Fivetran's Connect Card "
    "authorizes it with Fivetran's own app",
    "auth_without_token": "Fivetran's API auth block for this service takes no token or key "
    "we can obtain; Fivetran's Connect Card authorizes it",
    "table_group": "This service syncs files or tables chosen in Fivetran's setup form; "
    "Fivetran's Connect Card authorizes it and collects that choice",
    "everywhere": "Also offered through Fivetran's Connect Card (onboarding.connect_card = all)",
}


#: Services whose config has secret fields that do not authorize them: Fivetran documents that
#: they authorize only through its Connect Card (or its dashboard). Xero's ``client_id`` /
#: ``client_secret`` / ``webhook_key`` configure a custom app and webhooks, not the sign-in
#: (Fivetran's Xero setup docs; research notes on the Fivetran API, auth blocks table).
CARD_ONLY = frozenset({"xero"})


def card_reason(service: str, provider: Provider | None) -> str:
    """Why ``service`` is offered by Connect Card when no other way reaches it (a key of
    :data:`CARD_REASONS`)."""
    spec = get_service(service)
    assert spec is not None
    if spec.schema_format == "schema_table_group":
        return "table_group"
    if spec.has_auth and service not in CARD_ONLY:
        return "no_provider" if provider is None else "auth_without_token"
    return "card_only"


def ways_of(
    service: str,
    provider: Provider | None,
    oauth1: OAuth1Provider | None = None,
    *,
    card: str = "fallback",
) -> list[str]:
    """How ``service`` can be onboarded headlessly, preferred first: ``oauth2`` (an auth block
    and a configured provider whose tokens Fivetran's auth block takes), ``oauth1`` (an OAuth
    1.0a provider with an app: X / Twitter, see :mod:`app.providers.oauth1`) and/or
    ``credentials``
    (secret config fields: API keys, passwords, private keys; or an auth block filled by the
    form, for grants without a consent redirect — see :mod:`app.sources.auth_forms`), then
    ``connect_card`` when nothing else reaches it (``card="fallback"``) or always
    (``card="all"``)."""
    spec = get_service(service)
    if spec is None:
        return []
    ways = []
    if provider is not None and spec.has_auth and provider.spec.fivetran.hands_over_token:
        ways.append("oauth2")
    if oauth1 is not None and spec.has_auth:
        ways.append("oauth1")
    # secrets top-level, nested or in arrays; or the auth block of a credential service
    if service not in CARD_ONLY and (
        secret_patterns(service) or (spec.has_auth and service in credential_services())
    ):
        ways.append("credentials")
    if not ways or card == "all":
        ways.append("connect_card")
    return ways


def _card_source(
    service: str, provider: Provider | None, reason: str, settings: Settings | None
) -> Source:
    """The card way: the config fields the caller may set before the card (never secrets,
    never auth: the end-user enters those in Fivetran's card); required only what Fivetran
    requires to create the connection."""
    spec = get_service(service)
    assert spec is not None
    secret_names = {pattern[0] for pattern in secret_patterns(service)}
    excluded = set(PLATFORM_FIELDS) | set(spec.readonly_config) | secret_names
    schema = forms.build_form(spec, excluded=excluded, credentials=False, secret=secret_names)
    properties: dict[str, Any] = schema["properties"]
    required = [n for n in spec.required_config if n in properties]
    schema.pop("allOf", None)  # the card asks for what the chosen options need
    schema.pop("required", None)
    for prop in properties.values():
        prop.pop("x-show-if", None)
    if required:
        schema["required"] = required
    name = getattr(provider, "display_name", None) if provider is not None else None
    form_auth = credential_services().get(service)
    if form_auth is not None:
        name = form_auth.display_name
    return Source(
        service=service,
        name=name or _display_name(service),
        auth_method="connect_card",
        config_schema=schema,
        fivetran_fields=frozenset(n for n in properties if n in spec.config_fields),
        table_name=service
        if spec.schema_format in ("schema_table", "schema_table_group")
        else None,
        category=category_of(service),
        icon_url=icon_url(service, settings),
        reason=CARD_REASONS[reason],
    )


def _build(
    service: str,
    provider: Provider | None,
    settings: Settings | None = None,
    oauth1: OAuth1Provider | None = None,
) -> list[Source]:
    card = getattr(getattr(settings, "onboarding", None), "connect_card", "fallback")
    ways = ways_of(service, provider, oauth1, card=card)
    out = [
        _source(
            service, oauth1 if way == "oauth1" else provider, auth_method=way, settings=settings
        )
        for way in ways
        if way != "connect_card"
    ]
    if "connect_card" in ways:
        reason = "everywhere" if out else card_reason(service, provider)
        out.append(_card_source(service, provider, reason, settings))
    return out


@cache
def _service_names() -> frozenset[str]:
    """Every service of Fivetran's definition (a packaged file: read once per process)."""
    return frozenset(all_services())


class SourceCatalog:
    """Every service's ways (empty = not onboardable) from Fivetran's definition, the provider
    registry and the settings; one per app (the lifespan builds it). A service's sources are
    built on its first use (:meth:`get`), every service's only when they are listed."""

    def __init__(self, registry: ProviderRegistry | None, settings: Settings | None) -> None:
        self._registry = registry
        self._settings = settings
        self._sources: dict[str, list[Source]] = {}
        self._complete = False

    def _ways(self, service: str) -> list[Source]:
        """The sources of one service, built on first use (``[]`` for an unknown service,
        which is not remembered: a request names any string)."""
        found = self._sources.get(service)
        if found is not None:
            return found
        if service not in _service_names():
            return []
        registry = self._registry
        built = _build(
            service,
            registry.for_service(service) if registry is not None else None,
            self._settings,
            registry.oauth1.for_service(service) if registry is not None else None,
        )
        self._sources[service] = built
        return built

    def _all(self) -> dict[str, list[Source]]:
        if not self._complete:
            self._sources = {service: self._ways(service) for service in all_services()}
            self._complete = True
        return self._sources

    def list(
        self,
        *,
        category: str | None = None,
        auth_method: str | None = None,
        query: str | None = None,
    ) -> list[Source]:
        """Every onboardable (service, way), sorted by service (preferred way first);
        filtered by category, auth method and a case-insensitive search in service and
        display name."""
        q = query.lower() if query else None
        return [
            s
            for ways in self._all().values()
            for s in ways
            if (category is None or s.category == category)
            and (auth_method is None or s.auth_method == auth_method)
            and (q is None or q in s.service.lower() or q in s.name.lower())
        ]

    def get(self, service: str, auth_method: str | None = None) -> Source:
        """One source (its preferred way, or the one asked for); 404 ``source_not_found``
        for unknown or not enabled services and ways."""
        for source in self._ways(service):
            if auth_method is None or source.auth_method == auth_method:
                return source
        how = f" with {auth_method}" if auth_method else ""
        raise NotFound(
            f"Source '{service}' is unknown or not enabled{how}", code="source_not_found"
        )


# --- validation of end-user config against the form schema ------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


#: Longest config string a form field without its own ``maxLength`` accepts (keys and
#: certificates fit; a megabyte "host" is not forwarded to Fivetran).
MAX_CONFIG_TEXT = 16_384


def _err(errors: list[dict[str, str]], path: str, code: str, message: str) -> None:
    errors.append({"field": path, "code": code, "message": message})


def _check_value(
    path: str, value: Any, schema: dict[str, Any], errors: list[dict[str, str]]
) -> None:
    types = schema.get("type")
    if value is None:
        if not (isinstance(types, list) and "null" in types):
            _err(errors, path, "invalid_config", f"'{path}' must not be null")
        return
    names = [t for t in (types if isinstance(types, list) else [types]) if t and t != "null"]
    if names:
        ok = False
        for t in names:
            py = _JSON_TYPES.get(t)
            if py is None:
                ok = True
            elif isinstance(value, py) and not (
                t in ("integer", "number") and isinstance(value, bool)
            ):
                ok = True
        if not ok:
            _err(errors, path, "invalid_config", f"'{path}' must be of type {' or '.join(names)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(map(str, schema["enum"]))
        _err(errors, path, "invalid_config", f"'{path}' must be one of: {allowed}")
        return
    if isinstance(value, str):
        max_length = schema.get("maxLength", MAX_CONFIG_TEXT)
        if len(value) > max_length:
            _err(errors, path, "invalid_config", f"'{path}' is longer than {max_length} characters")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            _err(errors, path, "invalid_config", f"'{path}' does not match the expected format")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, schema["items"], errors)
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if sub is None:
                _err(
                    errors, f"{path}.{key}", "unknown_config_field", f"Unknown field '{path}.{key}'"
                )
                continue
            _check_value(f"{path}.{key}", item, sub, errors)


def config_errors(
    source: Source, config: dict[str, Any], *, prefix: str = "config"
) -> list[dict[str, str]]:
    """Every problem of ``config`` against the source's form schema (``{field, code,
    message}``), including conditional requirements (see :mod:`app.sources.forms`)."""
    errors: list[dict[str, str]] = []
    props: dict[str, Any] = source.config_schema["properties"]
    for key, value in config.items():
        if key not in props:
            _err(
                errors,
                f"{prefix}.{key}",
                "unknown_config_field",
                f"Unknown field '{prefix}.{key}' for source '{source.service}'",
            )
            continue
        _check_value(f"{prefix}.{key}", value, props[key], errors)
    for key in forms.required_for(source.config_schema, config):
        if key not in config and key in props and "default" not in props[key]:
            _err(
                errors,
                f"{prefix}.{key}",
                "missing_config_field",
                f"Missing required field '{prefix}.{key}'",
            )
    return errors


def validate_config(source: Source, config: dict[str, Any], *, prefix: str = "config") -> None:
    """Check ``config`` against the source's form schema; ONE 422 naming every offending
    field (``errors: [{field, code, message}]``)."""
    errors = config_errors(source, config, prefix=prefix)
    if errors:
        raise invalid_fields(errors)
