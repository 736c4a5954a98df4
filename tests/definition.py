"""Fivetran's own definition as a strict reference validator (for payload tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator


def _normalise(node: Any, name: str | None = None) -> Any:
    """Fix the definition's documented quirks so a standard validator can use it.

    enum typed "object" → string; sync_frequency's string enum → integers; OpenAPI 3.0
    ``nullable`` → a JSON-Schema type union."""
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _normalise(v, k) if k == "properties" else _normalise(v) for k, v in node.items()}
    if "properties" in node and isinstance(node["properties"], dict):
        out["properties"] = {k: _normalise(v, k) for k, v in node["properties"].items()}
    if "enum" in out and out.get("type") == "object":
        out["type"] = "string"
    if name == "sync_frequency" and out.get("type") == "integer" and "enum" in out:
        out["enum"] = [int(v) for v in out["enum"]]
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


@cache
def definition_validator() -> Callable[[str], Draft202012Validator] | None:
    """``validator(service)`` for ``<service>_NewConnectorRequestV1``; None without the file."""
    from tests.fivetran.conftest import SPEC_PATH

    if not SPEC_PATH.exists():
        return None
    doc = json.loads(SPEC_PATH.read_text())
    components = {"schemas": _normalise(doc["components"]["schemas"])}

    def validator(service: str) -> Draft202012Validator:
        name = f"{service}_NewConnectorRequestV1"
        assert name in components["schemas"], f"{name} missing from the definition"
        return Draft202012Validator(
            {"$ref": f"#/components/schemas/{name}", "components": components}
        )

    return validator


def definition_or_skip() -> Callable[[str], Draft202012Validator]:
    """:func:`definition_validator`, or skip the test when the definition is not there."""
    import pytest

    validator = definition_validator()
    if validator is None:
        pytest.skip("Fivetran's definition is not available (tests/fivetran/conftest.py)")
    return validator
