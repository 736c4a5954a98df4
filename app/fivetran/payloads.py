"""Fivetran request bodies: build them, validate them against the definition, mask them.

Every body is checked against the service's request schema from Fivetran's definition (the
generated index, :mod:`app.fivetran.index`) before it is sent: an unknown field, a missing
required field, a read-only field, a wrong type or a value outside an enum raises
:class:`PayloadError` naming the offending field (``config.domain``, ``auth.client_access``,
``sync_frequency``…). The Fivetran simulator uses the same validator.

Schema placement per the service's ``schema_format``: ``schema`` → ``config.schema``;
``schema_table`` → ``config.schema`` + ``config.table``; ``schema_prefix`` →
``config.schema_prefix``; ``schema_table_group`` → ``config.schema`` +
``config.table_group_name`` (the ``table`` argument).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from app.errors import InvalidInput
from app.fivetran.index import FieldSpec, ServiceSpec, get_service, request_fields
from app.fivetran.secret_paths import mask_config

MASK = "******"
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_DAILY_SYNC_TIME = re.compile(r"^([01][0-9]|2[0-3]):00\Z")
_SCHEMA_KEYS = {
    "schema": ("schema",),
    "schema_table": ("schema", "table"),
    "schema_prefix": ("schema_prefix",),
    "schema_table_group": ("schema", "table_group_name"),
}
# Create/PATCH fields that only steer setup tests (not persisted).
_TEST_CONTROL = {"run_setup_tests", "trust_certificates", "trust_fingerprints"}
# Names that are secrets even where the definition forgets `format: password`.
_SECRETISH = re.compile(r"(password|secret|token|private_key|api_key|passphrase)", re.I)
_NOT_SECRET = ("_at", "_date", "_url", "_type", "_method")


class PayloadError(InvalidInput):
    """A Fivetran request body does not match the definition; ``field`` names the culprit."""

    code = "invalid_fivetran_payload"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}", field=field)


class _Revealable(Protocol):
    def reveal(self) -> str: ...


SecretLike = str | _Revealable


@dataclass(frozen=True)
class AuthValues:
    """What a provider hands over for a connection's ``auth`` block, before placement.

    Providers describe their token fields as this data (``Provider.fivetran_auth``); only
    :func:`build_create_payload` / :func:`build_auth_patch` place them in the service's auth
    tree (:func:`auth_block_for`).
    """

    client_id: str | None = None
    client_secret: SecretLike | None = None
    access_token: SecretLike | None = None
    refresh_token: SecretLike | None = None
    #: Dotted auth-tree paths → values (``realm_id``, ``client_access.developer_token``…).
    extra: Mapping[str, Any] | None = None

    def place(self, service: str) -> dict[str, Any]:
        """The ``auth`` block of ``service`` holding these values."""
        return auth_block_for(
            service,
            client_id=self.client_id,
            client_secret=self.client_secret,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            extra=dict(self.extra) if self.extra else None,
        )


def _plain(value: SecretLike | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.reveal()


def _service(service: str) -> ServiceSpec:
    spec = get_service(service) if isinstance(service, str) else None
    if spec is None:
        raise PayloadError("service", f"unsupported service '{service}'")
    return spec


# ------------------------------------------------------------------------------------------
# Validation


def _type_name(spec: FieldSpec) -> str:
    return {"integer": "an integer", "number": "a number", "boolean": "a boolean"}.get(
        spec.type, f"a{'n' if spec.type[0] in 'aeiou' else ''} {spec.type}"
    )


def _check(value: Any, spec: FieldSpec, path: str) -> None:
    if value is None:
        if spec.nullable:
            return
        raise PayloadError(path, "must not be null")
    t = spec.type
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }.get(t, True)
    if not ok:
        raise PayloadError(path, f"must be {_type_name(spec)}")
    if spec.enum is not None and value not in spec.enum:
        allowed = ", ".join(str(v) for v in spec.enum)
        raise PayloadError(path, f"must be one of: {allowed}")
    if t == "array" and spec.items is not None:
        for i, item in enumerate(value):
            _check(item, spec.items, f"{path}[{i}]")
    if t == "object" and spec.properties is not None:
        _check_object(value, spec.properties, path, required=spec.required)


def _check_object(
    value: dict[str, Any],
    fields: dict[str, FieldSpec],
    path: str,
    *,
    required: tuple[str, ...] | list[str] = (),
) -> None:
    prefix = f"{path}." if path else ""
    for key in value:
        if key not in fields:
            raise PayloadError(prefix + key, "unknown field")
    for key in required:
        if key not in value:
            raise PayloadError(prefix + key, "is required")
    for key, item in value.items():
        _check(item, fields[key], prefix + key)


def _schema_fields(spec: ServiceSpec) -> dict[str, FieldSpec]:
    return {k: FieldSpec(type="string") for k in _SCHEMA_KEYS[spec.schema_format]}


def _check_config(spec: ServiceSpec, config: Any, *, create: bool) -> None:
    if not isinstance(config, dict):
        raise PayloadError("config", "must be an object")
    readonly = set(spec.readonly_config)
    for key in config:
        if key in readonly:
            raise PayloadError(f"config.{key}", "is read-only")
    fields = {**spec.config_fields, **_schema_fields(spec)}
    _check_object(config, fields, "config", required=spec.required_config if create else ())
    _check_hosts(spec, config)
    for key in _SCHEMA_KEYS[spec.schema_format]:
        if key in config and key != "table" and not _SCHEMA_NAME.match(config[key]):
            raise PayloadError(
                f"config.{key}",
                "must start with a letter or underscore and contain only letters, digits "
                "and underscores",
            )


#: Config fields that must name a host of the service's own domains (https only): Salesforce
#: My Domain (``acme.my.salesforce.com``), sandboxes (``acme--sbx.sandbox.my.salesforce.com``)
#: and the login hosts (``login``/``test.salesforce.com``).
_SALESFORCE_URL = re.compile(
    r"^https://(?:[a-z0-9](?:[a-z0-9-]{0,78}[a-z0-9])?\.)+salesforce\.com/?$", re.I
)
_HOST_FIELDS: dict[tuple[str, str], re.Pattern[str]] = {
    ("salesforce", "base_url"): _SALESFORCE_URL,
    ("salesforce_sandbox", "base_url"): _SALESFORCE_URL,
}


def _check_hosts(spec: ServiceSpec, config: dict[str, Any]) -> None:
    for (service, name), pattern in _HOST_FIELDS.items():
        value = config.get(name)
        if service == spec.service and value is not None:
            if not isinstance(value, str) or not pattern.match(value):
                raise PayloadError(
                    f"config.{name}", "must be an https:// URL of a host under salesforce.com"
                )


def _check_auth(spec: ServiceSpec, auth: Any) -> None:
    if spec.auth_tree is None:
        raise PayloadError(
            "auth",
            f"service '{spec.service}' takes no auth block (authorize it through its config "
            "credentials or the Fivetran dashboard)",
        )
    if not isinstance(auth, dict):
        raise PayloadError("auth", "must be an object")
    if not auth:
        raise PayloadError("auth", "must not be empty")
    _check_object(auth, spec.auth_tree, "auth")


def _check_top(body: dict[str, Any], fields: dict[str, FieldSpec], extra: set[str]) -> None:
    for key, value in body.items():
        if key in extra:
            continue
        if key not in fields:
            raise PayloadError(key, "unknown field")
        _check(value, fields[key], key)
    dst = body.get("daily_sync_time")
    if dst is not None and not _DAILY_SYNC_TIME.match(dst):
        raise PayloadError("daily_sync_time", "must be a whole hour HH:00 (00:00-23:00)")


def validate_create_payload(body: Any) -> None:
    """Raise :class:`PayloadError` unless ``body`` is a valid ``POST /v1/connections`` body."""
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object")
    for key in ("group_id", "service"):
        if key not in body or body[key] in (None, ""):
            raise PayloadError(key, "is required")
    spec = _service(body["service"])
    extra = {"config", "auth"}
    if spec.esm_keys:
        extra.add("external_secrets_keys_config")
    _check_top(body, request_fields("create"), extra)
    if "config" not in body:
        first = spec.required_config[0] if spec.required_config else "schema"
        raise PayloadError(f"config.{first}", "is required")
    _check_config(spec, body["config"], create=True)
    if "auth" in body:
        _check_auth(spec, body["auth"])
    if "external_secrets_keys_config" in body and spec.esm_keys:
        _check(
            body["external_secrets_keys_config"],
            FieldSpec(type="object", properties=spec.esm_keys),
            "external_secrets_keys_config",
        )


def validate_update_payload(service: str, body: Any) -> None:
    """Raise :class:`PayloadError` unless ``body`` is a valid ``PATCH /v1/connections/{id}``
    body for ``service`` (at least one persistent field; test-control fields alone are
    rejected, as Fivetran does)."""
    spec = _service(service)
    if not isinstance(body, dict):
        raise PayloadError("body", "must be a JSON object")
    fields = {k: v for k, v in request_fields("update").items() if k not in ("config", "auth")}
    _check_top(body, fields, {"config", "auth"})
    if not set(body) - _TEST_CONTROL:
        raise PayloadError(
            "body", "needs at least one persistent field (e.g. config, auth, paused)"
        )
    if "config" in body:
        _check_config(spec, body["config"], create=False)
    if "auth" in body:
        _check_auth(spec, body["auth"])


# ------------------------------------------------------------------------------------------
# Builders


def _place_schema(
    spec: ServiceSpec, config: dict[str, Any], schema: str, table: str | None
) -> dict[str, Any]:
    keys = _SCHEMA_KEYS[spec.schema_format]
    wanted: dict[str, Any] = {keys[0]: schema}
    if len(keys) > 1:
        if not table:
            raise PayloadError(f"config.{keys[1]}", "is required")
        wanted[keys[1]] = table
    out = dict(config)
    for key, value in wanted.items():
        if key in out and out[key] != value:
            raise PayloadError(f"config.{key}", "conflicts with the schema/table arguments")
        out[key] = value
    return out


def reported_schema(service: str, schema: str, table: str | None) -> str:
    """The ``schema`` Fivetran reports for a connection created with these arguments:
    ``schema_table`` (and ``schema_table_group``) services report ``"schema.table"``."""
    spec = get_service(service)
    keys = _SCHEMA_KEYS[spec.schema_format if spec else "schema"]
    return f"{schema}.{table}" if len(keys) > 1 and table else schema


def build_create_payload(
    service: str,
    *,
    group_id: str,
    schema: str,
    config: dict[str, Any],
    auth: AuthValues | dict[str, Any] | None = None,
    table: str | None = None,
    paused: bool = True,
    run_setup_tests: bool = True,
    trust_certificates: bool = False,
    trust_fingerprints: bool = False,
    sync_frequency: int | None = None,
    daily_sync_time: str | None = None,
    networking_method: str | None = None,
) -> dict[str, Any]:
    """The exact, validated ``POST /v1/connections`` body.

    ``schema`` is the destination schema name (or prefix, per the service's schema format);
    ``table`` is the table (``schema_table``) or table group name (``schema_table_group``).
    ``paused`` defaults to True: we unpause only after setup tests and schema policy.
    ``auth`` is a provider's :class:`AuthValues` (placed here) or an already placed block.
    """
    spec = _service(service)
    body: dict[str, Any] = {
        "service": service,
        "group_id": group_id,
        "paused": paused,
        "run_setup_tests": run_setup_tests,
        "trust_certificates": trust_certificates,
        "trust_fingerprints": trust_fingerprints,
        "config": _place_schema(spec, config or {}, schema, table),
    }
    if auth is not None:
        body["auth"] = auth.place(service) if isinstance(auth, AuthValues) else auth
    if sync_frequency is not None:
        body["sync_frequency"] = sync_frequency
    if daily_sync_time is not None:
        body["daily_sync_time"] = daily_sync_time
    if networking_method is not None:
        body["networking_method"] = networking_method
    validate_create_payload(body)
    return body


def build_auth_patch(service: str, *, auth: AuthValues | dict[str, Any]) -> dict[str, Any]:
    """The validated re-authorization ``PATCH /v1/connections/{id}`` body (runs setup tests)."""
    block = auth.place(service) if isinstance(auth, AuthValues) else auth
    body = {"auth": block, "run_setup_tests": True}
    validate_update_payload(service, body)
    return body


def auth_block_for(
    service: str,
    *,
    client_id: str | None = None,
    client_secret: SecretLike | None = None,
    access_token: SecretLike | None = None,
    refresh_token: SecretLike | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Place the values where ``service``'s auth tree has them.

    ``client_id``/``client_secret`` go to ``client_access`` (dropped when the service has no
    ``client_access``); ``refresh_token``/``access_token`` go to the top level when the tree has
    them (a token the service does not accept is dropped, but at least one token must land).
    ``extra`` maps dotted paths to values (``{"realm_id": "…",
    "client_access.developer_token": "…"}``); a path outside the tree raises
    :class:`PayloadError`. Secret wrappers (``.reveal()``) are accepted.
    """
    spec = _service(service)
    if spec.auth_tree is None:
        raise PayloadError("auth", f"service '{service}' takes no auth block")
    tree = spec.auth_tree
    block: dict[str, Any] = {}
    client = tree.get("client_access")
    if client is not None and client.properties is not None:
        access: dict[str, Any] = {}
        if client_id is not None and "client_id" in client.properties:
            access["client_id"] = client_id
        secret = _plain(client_secret)
        if secret is not None and "client_secret" in client.properties:
            access["client_secret"] = secret
        if access:
            block["client_access"] = access
    placed_token = False
    for name, value in (("refresh_token", refresh_token), ("access_token", access_token)):
        plain = _plain(value)
        if plain is not None and name in tree:
            block[name] = plain
            placed_token = True
    for path, value in (extra or {}).items():
        parts = path.split(".")
        node: dict[str, FieldSpec] | None = tree
        target = block
        for i, part in enumerate(parts):
            if node is None or part not in node:
                raise PayloadError(f"auth.{path}", f"not part of {service}'s auth block")
            if i == len(parts) - 1:
                target[part] = _plain(value) if not isinstance(value, dict | list) else value
                if part in ("access_token", "refresh_token", "user_access_token"):
                    placed_token = True
            else:
                node = node[part].properties
                target = target.setdefault(part, {})
    if not placed_token and any(
        k in tree for k in ("refresh_token", "access_token", "user_access_token")
    ):
        accepted = [k for k in ("refresh_token", "access_token", "user_access_token") if k in tree]
        raise PayloadError("auth", f"{service} needs one of: {', '.join(accepted)}")
    _check_auth(spec, block)
    return block


# ------------------------------------------------------------------------------------------
# Masking


def _mask_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_tree(v) for v in value]
    return MASK if value is not None else None


def _mask_fields(value: Any, fields: dict[str, FieldSpec] | None) -> Any:
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        spec = (fields or {}).get(key)
        if (spec is not None and spec.secret) or (
            _SECRETISH.search(key) and isinstance(item, str) and not key.endswith(_NOT_SECRET)
        ):
            out[key] = MASK if item is not None else None
        elif isinstance(item, dict):
            out[key] = _mask_fields(item, spec.properties if spec else None)
        elif isinstance(item, list):
            sub = spec.items.properties if spec and spec.items else None
            out[key] = [_mask_fields(v, sub) for v in item]
        else:
            out[key] = item
    return out


def mask_secrets(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of a create/patch body (or connection) with every secret value → ``"******"``:
    the whole ``auth`` block, config fields flagged secret by the definition, and any field
    whose name says it is a secret (password, token, private key…)."""
    out = copy.deepcopy(body)
    spec = get_service(out.get("service", "")) if isinstance(out.get("service"), str) else None
    if "auth" in out:
        out["auth"] = _mask_tree(out["auth"])
    if isinstance(out.get("config"), dict):
        config = mask_config(spec.service, out["config"]) if spec else out["config"]
        out["config"] = _mask_fields(config, spec.config_fields if spec else None)
    return out
