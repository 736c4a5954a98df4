"""Form rules shared by the form builder and validation: which fields a config requires.

A form schema (``config_schema`` of ``/v1/sources``) states its requirements as JSON Schema:
``required``, ``dependentRequired`` and ``allOf: [{if: {properties: {sel: {const|enum}}},
then: {required: [...]}}]`` for the selectors Fivetran uses (``connection_type`` → tunnel
fields, ``auth_method``, ``update_method`` …). :func:`required_for` evaluates exactly that
subset for one submitted config, so the validator and a frontend agree on what is missing.
"""

from __future__ import annotations

from typing import Any


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
