"""The per-service index generated from Fivetran's OpenAPI definition (read-only, cached).

The data file ``app/fivetran/data/service_index.json`` ships inside the package; it is produced
by :mod:`app.fivetran.build_index`; the definition itself is never read at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

SchemaFormat = str  # "schema" | "schema_table" | "schema_prefix" | "schema_table_group"


@dataclass(frozen=True)
class FieldSpec:
    """One field: JSON type (``string``/``integer``/``number``/``boolean``/``array``/``object``/
    ``any``), allowed values, secret flag (``format: password``), array items and nested
    properties."""

    type: str
    enum: tuple[Any, ...] | None = None
    secret: bool = False
    nullable: bool = False
    title: str | None = None
    items: FieldSpec | None = None
    properties: dict[str, FieldSpec] | None = None
    required: tuple[str, ...] = ()

    @property
    def items_type(self) -> str | None:
        return self.items.type if self.items is not None else None

    def to_json_schema(self) -> dict[str, Any]:
        """A JSON-Schema fragment (for forms, e.g. the sources API)."""
        out: dict[str, Any] = {}
        if self.type != "any":
            out["type"] = [self.type, "null"] if self.nullable else self.type
        if self.enum is not None:
            out["enum"] = list(self.enum)
        if self.secret:
            out["format"] = "password"
            out["writeOnly"] = True
        if self.title:
            out["title"] = self.title
        if self.items is not None:
            out["items"] = self.items.to_json_schema()
        if self.properties is not None:
            out["properties"] = {k: v.to_json_schema() for k, v in self.properties.items()}
            if self.required:
                out["required"] = list(self.required)
        return out


@dataclass(frozen=True)
class ServiceSpec:
    """What Fivetran's definition says about one connector service."""

    service: str
    schema_format: SchemaFormat
    required_config: list[str]
    config_fields: dict[str, FieldSpec]
    auth_tree: dict[str, FieldSpec] | None
    readonly_config: list[str] = field(default_factory=list)
    esm_keys: dict[str, FieldSpec] | None = None

    @property
    def has_auth(self) -> bool:
        return self.auth_tree is not None

    def auth_paths(self) -> list[str]:
        """Dotted leaf paths of the auth tree, e.g. ``client_access.client_id``."""
        out: list[str] = []

        def walk(prefix: str, tree: dict[str, FieldSpec]) -> None:
            for name, spec in tree.items():
                if spec.properties:
                    walk(f"{prefix}{name}.", spec.properties)
                else:
                    out.append(prefix + name)

        walk("", self.auth_tree or {})
        return out


def _field(raw: dict[str, Any]) -> FieldSpec:
    return FieldSpec(
        type=raw.get("type", "any"),
        enum=tuple(raw["enum"]) if "enum" in raw else None,
        secret=bool(raw.get("secret", False)),
        nullable=bool(raw.get("nullable", False)),
        title=raw.get("title"),
        items=_field(raw["items"]) if "items" in raw else None,
        properties={k: _field(v) for k, v in raw["properties"].items()}
        if "properties" in raw
        else None,
        required=tuple(raw.get("required", ())),
    )


def _fields(raw: dict[str, Any]) -> dict[str, FieldSpec]:
    return {k: _field(v) for k, v in raw.items()}


@lru_cache(maxsize=1)
def _raw() -> dict[str, Any]:
    text = resources.files("app.fivetran").joinpath("data/service_index.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


@cache
def get_service(service: str) -> ServiceSpec | None:
    """The spec of ``service`` (e.g. ``"salesforce"``), or None for an unknown service."""
    raw = _raw()["services"].get(service)
    if raw is None:
        return None
    return ServiceSpec(
        service=service,
        schema_format=raw["schema_format"],
        required_config=list(raw["required"]),
        config_fields=_fields(raw["config"]),
        auth_tree=_fields(raw["auth"]) if raw["auth"] is not None else None,
        readonly_config=list(raw["readonly"]),
        esm_keys=_fields(raw["esm_keys"]) if "esm_keys" in raw else None,
    )


def all_services() -> list[str]:
    """Every connector service name in the definition, sorted."""
    return sorted(_raw()["services"])


def destination_services() -> list[str]:
    """Every destination service name in the definition, sorted."""
    return list(_raw()["destinations"])


@lru_cache(maxsize=2)
def request_fields(kind: str) -> dict[str, FieldSpec]:
    """Top-level fields of the create (``"create"``) or update (``"update"``) request."""
    return _fields(_raw()["request"][kind])
