"""The sources catalog: what this deployment can onboard headlessly, with form schemas.

Generated from Fivetran's definition (``app.fivetran.index``) and the OAuth provider catalog
(``app.state.providers``):

* a service with an API ``auth`` block and a **configured** OAuth provider → ``oauth2``;
* a service without an ``auth`` block whose config carries secret fields (API keys,
  passwords, private keys) → ``credentials``;
* everything else is not offered: ``auth``-only services without a configured provider,
  services Fivetran lets authorize only through its own Connect Card (no API auth and no
  credential fields), and ``schema_table_group`` services (we do not name table groups).

``config_schema`` is a JSON Schema of the fields the end-user fills: Fivetran's config fields
minus the ones we set ourselves (schema naming, auth, read-only fields, the fields the provider
mapping fills) plus the provider's own inputs (subdomain, shop, login host …). Secrets are
``writeOnly`` + ``format: password``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidInput, NotFound
from app.onboarding.auth_forms import auth_form_properties, is_secret_auth_field

#: Fields the platform sets itself, never the end-user.
PLATFORM_FIELDS = frozenset(
    {"schema", "schema_prefix", "table", "table_group_name", "auth", "public_key"}
)
#: For OAuth sources, config fields that select another authentication path.
OAUTH_EXCLUDED_FIELDS = frozenset(
    {"authentication_method", "auth_method", "auth_type", "auth_mode", "authorization_method"}
)
#: Fields Fivetran's definition leaves optional but without which the source cannot connect.
PRACTICALLY_REQUIRED: dict[str, tuple[str, ...]] = {
    "stripe": ("api_key",),
    "postgres": ("host", "port", "database", "user"),
    "mysql": ("host", "port", "user"),
    "sql_server": ("host", "port", "database", "user"),
    "snowflake_db": ("host", "user"),
}


@dataclass(frozen=True)
class Source:
    """One onboardable service."""

    service: str
    name: str
    auth_method: str  # "oauth2" | "credentials"
    config_schema: dict[str, Any]
    scopes: list[str] | None = None
    provider_key: str | None = None
    secret_fields: frozenset[str] = field(default_factory=frozenset)
    fivetran_fields: frozenset[str] = field(default_factory=frozenset)
    input_fields: frozenset[str] = field(default_factory=frozenset)
    table_name: str | None = None
    #: Form fields that fill the Fivetran ``auth`` block (``auth.<path>``; credential route).
    auth_fields: frozenset[str] = field(default_factory=frozenset)
    #: Verification of the provider facts (None for plain credential sources).
    verification: Any | None = None

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.service,
            "name": self.name,
            "auth_method": self.auth_method,
            "config_schema": self.config_schema,
        }
        if self.auth_method == "oauth2":
            out["scopes"] = list(self.scopes or [])
        if self.verification is not None:
            out.update(self.verification.public())
        return out


def _display_name(service: str) -> str:
    return " ".join(part.capitalize() for part in service.split("_"))


def _provider_inputs(provider: Any) -> tuple[dict[str, Any], list[str]]:
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


def _provider_set_fields(provider: Any) -> set[str]:
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


def _build(service: str, provider: Any | None) -> Source | None:
    from app.fivetran.index import get_service
    from app.providers.catalog_data import credential_services

    spec = get_service(service)
    if spec is None:
        return None
    form_auth = credential_services().get(service) if spec.has_auth else None
    if spec.schema_format == "schema_table_group" and provider is None and form_auth is None:
        return None
    secret_names = {n for n, f in spec.config_fields.items() if f.secret}
    if provider is not None and spec.has_auth:
        if not provider.spec.fivetran.hands_over_token:
            return None  # Fivetran's auth block takes no token: Connect Card only
        auth_method = "oauth2"
    elif form_auth is not None and provider is None:
        auth_method = "credentials"
    elif not spec.has_auth and secret_names:
        auth_method = "credentials"
    else:
        return None
    excluded = set(PLATFORM_FIELDS) | set(spec.readonly_config)
    if auth_method == "oauth2":
        excluded |= OAUTH_EXCLUDED_FIELDS | secret_names | _provider_set_fields(provider)
    properties: dict[str, Any] = {}
    for name, fspec in sorted(spec.config_fields.items()):
        if name in excluded:
            continue
        properties[name] = fspec.to_json_schema()
    required = [
        n
        for n in list(spec.required_config) + list(PRACTICALLY_REQUIRED.get(service, ()))
        if n in properties
    ]
    input_props: dict[str, Any] = {}
    scopes: list[str] | None = None
    name = _display_name(service)
    provider_key = None
    if provider is not None and auth_method == "oauth2":
        input_props, input_required = _provider_inputs(provider)
        for key, prop in input_props.items():
            properties.setdefault(key, prop)
        required += [n for n in input_required if n not in required]
        scopes = list(getattr(provider, "scopes", None) or [])
        name = getattr(provider, "display_name", None) or name
        provider_key = getattr(provider, "key", None)
    auth_props: dict[str, Any] = {}
    if form_auth is not None and auth_method == "credentials":
        auth_props = auth_form_properties(spec, form_auth.auth_fields)
        properties.update(auth_props)
        secret_names |= {n for n in auth_props if is_secret_auth_field(n)}
    verification = None
    if auth_method == "oauth2" and provider is not None:
        verification = provider.spec.verification
    elif form_auth is not None:
        verification = form_auth.verification
        name = form_auth.display_name
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
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
        auth_fields=frozenset(auth_props),
        verification=verification,
    )


def _provider_for(app_state: Any, service: str) -> Any | None:
    registry = getattr(app_state, "providers", None)
    if registry is None:
        return None
    return registry.for_service(service)


def _sources(app_state: Any) -> dict[str, Source | None]:
    """Every service's source (None = not onboardable), built once per app."""
    from app.fivetran.index import all_services

    cache: dict[str, Source | None] | None = getattr(app_state, "onboarding_sources", None)
    if cache is None:
        cache = {}
        for service in all_services():
            cache[service] = _build(service, _provider_for(app_state, service))
        app_state.onboarding_sources = cache
    return cache


def list_sources(app_state: Any) -> list[Source]:
    """Every onboardable source, sorted by service."""
    return [s for s in _sources(app_state).values() if s is not None]


def get_source(app_state: Any, service: str) -> Source:
    """One source; 404 ``source_not_found`` for unknown or not enabled services."""
    source = _sources(app_state).get(service)
    if source is None:
        raise NotFound(f"Source '{service}' is unknown or not enabled", code="source_not_found")
    return source


# --- validation of end-user config against the form schema ------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _check_value(path: str, value: Any, schema: dict[str, Any]) -> None:
    types = schema.get("type")
    if value is None:
        if isinstance(types, list) and "null" in types:
            return
        raise InvalidInput(f"'{path}' must not be null", code="invalid_config", field=path)
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
            raise InvalidInput(
                f"'{path}' must be of type {' or '.join(names)}",
                code="invalid_config",
                field=path,
            )
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidInput(
            f"'{path}' must be one of: {', '.join(map(str, schema['enum']))}",
            code="invalid_config",
            field=path,
        )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidInput(f"'{path}' is too long", code="invalid_config", field=path)
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise InvalidInput(
                f"'{path}' does not match the expected format", code="invalid_config", field=path
            )
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check_value(f"{path}[{i}]", item, schema["items"])
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if sub is None:
                raise InvalidInput(
                    f"Unknown field '{path}.{key}'",
                    code="unknown_config_field",
                    field=f"{path}.{key}",
                )
            _check_value(f"{path}.{key}", item, sub)


def validate_config(source: Source, config: dict[str, Any], *, prefix: str = "config") -> None:
    """Check ``config`` against the source's form schema; 422 naming the offending field."""
    props: dict[str, Any] = source.config_schema["properties"]
    for key, value in config.items():
        if key not in props:
            raise InvalidInput(
                f"Unknown field '{prefix}.{key}' for source '{source.service}'",
                code="unknown_config_field",
                field=f"{prefix}.{key}",
            )
        _check_value(f"{prefix}.{key}", value, props[key])
    for key in source.config_schema.get("required", []):
        if key not in config and "default" not in props[key]:
            raise InvalidInput(
                f"Missing required field '{prefix}.{key}'",
                code="missing_config_field",
                field=f"{prefix}.{key}",
            )
