"""Form rules shared by the form builder and validation: which fields a config requires.

A form schema (``config_schema`` of ``/v1/sources``) states its requirements as JSON Schema:
``required``, ``dependentRequired`` and ``allOf: [{if: {properties: {sel: {const|enum}}},
then: {required: [...]}}]`` for the selectors Fivetran uses (``connection_type`` → tunnel
fields, ``auth_method``, ``update_method`` …). :func:`required_for` evaluates exactly that
subset for one submitted config, so the validator and a frontend agree on what is missing.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from app.fivetran.index import FieldSpec, ServiceSpec
from app.fivetran.secret_paths import is_secret
from app.sources import form_catalog as catalog


def _value(schema: dict[str, Any], config: dict[str, Any], name: str) -> Any:
    if name in config:
        return config[name]
    return schema.get("properties", {}).get(name, {}).get("default")


def condition_holds(schema: dict[str, Any], cond: dict[str, Any], config: dict[str, Any]) -> bool:
    """The ``if`` of a rule: every named property has the ``const`` / one of the ``enum``."""
    for name, test in cond.get("properties", {}).items():
        value = _value(schema, config, name)
        if "const" in test and value != test["const"]:
            return False
        if "enum" in test and value not in test["enum"]:
            return False
    return all(_value(schema, config, n) is not None for n in cond.get("required", []))


def required_for(schema: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """Names required of ``config``: ``required`` + the ``then`` of every rule that holds +
    ``dependentRequired`` of present fields (in that order, without repeats)."""
    out: list[str] = list(schema.get("required", []))
    for rule in schema.get("allOf", []):
        if "if" in rule and condition_holds(schema, rule["if"], config):
            out += rule.get("then", {}).get("required", [])
        elif "if" in rule:
            out += rule.get("else", {}).get("required", [])
    for name, needs in schema.get("dependentRequired", {}).items():
        if name in config:
            out += needs
    seen: set[str] = set()
    return [n for n in out if not (n in seen or seen.add(n))]  # type: ignore[func-returns-value]


def with_defaults(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``config`` plus the form's defaults of the fields it requires (a port left empty is
    the service's standard port, a selector left empty its default value)."""
    out = dict(config)
    props = schema.get("properties", {})
    for _ in range(2):  # a defaulted selector can require more fields
        for name in required_for(schema, out):
            if name not in out and "default" in props.get(name, {}):
                out[name] = props[name]["default"]
    return out


# --- building a form ---------------------------------------------------------------------

_AUTH_SELECTORS = ("auth_method", "auth", "auth_mode", "auth_type", "authentication_method")


@cache
def _field_docs() -> dict[str, dict[str, str]]:
    text = resources.files("app.fivetran").joinpath("data/field_docs.json").read_text()
    data: dict[str, dict[str, str]] = json.loads(text)
    return data


def _humanise(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _property(service: str, name: str, spec: FieldSpec, *, credentials: bool) -> dict[str, Any]:
    prop = spec.to_json_schema()
    if spec.type == "string" and is_secret(name, spec):
        prop.update({"format": "password", "writeOnly": True})
    prop["title"] = catalog.LABELS.get(name) or spec.title or _humanise(name)
    doc = _field_docs().get(service, {}).get(name)
    if doc:
        prop["description"] = doc
    enum = list(spec.enum) if spec.enum is not None else None
    if enum is not None and credentials:
        enum = [v for v in enum if v not in catalog.NOT_OFFERED_VALUES.get(name, ())] or enum
    if enum is not None:
        prop["enum"] = enum
        prop["oneOf"] = [
            {"const": v, "title": catalog.ENUM_LABELS.get(str(v), _humanise(str(v)))} for v in enum
        ]
    default = catalog.DEFAULTS.get(name)
    if name == "port" and service in catalog.PORTS:
        default = catalog.PORTS[service]
    if default is not None and (enum is None or default in enum):
        if spec.type == "integer" and isinstance(default, int):
            prop["default"] = default
        elif spec.type == "string" and isinstance(default, str):
            prop["default"] = default
    return prop


def _rules(props: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, dict[str, list[str]]]]:
    rules: list[dict[str, Any]] = []
    show_if: dict[str, dict[str, list[str]]] = {}
    for selector, value, needs in catalog.RULES:
        sel = props.get(selector)
        if sel is None or value not in sel.get("enum", ()):
            continue
        present = [n for n in needs if n in props and n != selector]
        if not present:
            continue
        cond: dict[str, Any] = {"properties": {selector: {"const": value}}}
        if sel.get("default") != value:
            cond["required"] = [selector]
        rules.append({"if": cond, "then": {"required": present}})
        for name in present:
            show_if.setdefault(name, {}).setdefault(selector, []).append(value)
    return rules, show_if


def _derived_required(spec: ServiceSpec, props: dict[str, Any], secret: set[str]) -> list[str]:
    """Rules for the forms nobody curated: the definition's required fields; the one secret
    of a source with a single secret and no authentication selector (an API key); and the
    host/user/database of a password-protected server."""
    out = [n for n in spec.required_config if n in props]
    has_selector = any(s in props for s in _AUTH_SELECTORS)
    secrets = sorted(n for n in props if n in secret)
    if len(secrets) == 1 and not has_selector:
        out.append(secrets[0])
    if "password" in props and "host" in props:
        out += [n for n in ("host", "user", "username", "database") if n in props]
    return out


def _group_positions() -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for position, (gid, _, names) in enumerate(catalog.GROUPS):
        for name in names:
            out.setdefault(name, (position, gid))
    return out


#: Field name → (position, id) of the first group that lists it (``catalog.GROUPS``).
_GROUP_OF = _group_positions()
#: Fields no group lists go last, in the advanced group.
_ADVANCED = (len(catalog.GROUPS), catalog.ADVANCED[0])


def _group_of(name: str) -> tuple[int, str]:
    """(position, id) of the form group of a field (advanced when no group lists it)."""
    return _GROUP_OF.get(name, _ADVANCED)


def build_form(
    spec: ServiceSpec,
    *,
    excluded: set[str],
    credentials: bool,
    secret: set[str],
) -> dict[str, Any]:
    """The JSON Schema of one source's form (titles, help, defaults, labelled enums, order,
    groups, conditional requirements, ``x-required-source``)."""
    service = spec.service
    props = {
        name: _property(service, name, fspec, credentials=credentials)
        for name, fspec in sorted(spec.config_fields.items())
        if name not in excluded
    }
    rules, show_if = _rules(props)
    for name, conds in show_if.items():
        props[name]["x-show-if"] = conds
    curated = catalog.CURATED.get(service)
    if curated is not None:
        required = [n for n in curated if n in props]
        source = "curated"
    else:
        required = _derived_required(spec, props, secret)
        source = "derived"
    required = list(dict.fromkeys(required))
    for name in required:
        props[name].pop("x-show-if", None)
    group_of = {n: _group_of(n) for n in props}
    order = sorted(
        props,
        key=lambda n: (group_of[n][0], n not in required, "x-show-if" in props[n], n),
    )
    groups = [
        {"id": gid, "title": title, "fields": [n for n in order if group_of[n][1] == gid]}
        for gid, title in [(g[0], g[1]) for g in catalog.GROUPS] + [catalog.ADVANCED]
    ]
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "x-order": order,
        "x-groups": [g for g in groups if g["fields"]],
        "x-required-source": source,
    }
    if required:
        schema["required"] = required
    if rules:
        schema["allOf"] = rules
    return schema
