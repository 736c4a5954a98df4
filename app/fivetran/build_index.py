"""Generate ``app/fivetran/data/service_index.json`` from Fivetran's OpenAPI definition.

Run from the repository root::

    python -m app.fivetran.build_index /path/to/openapi-connections-2026-06-29.json

The index is the compact, per-service subset of the definition that the running service needs
(it never reads the definition itself at run time): for every connector service the schema
format, required config keys, config fields (type, enum, secret flag, array items, nested
properties, short titles), the ``auth`` field tree (``null`` = the service takes no API auth
block), read-only config fields and ESM key fields; plus the common top-level create/update
request fields and the destination service names.

Spec quirks normalised here (and only here):

* enum-valued fields typed ``"object"`` are really strings → ``"string"``;
* ``sync_frequency`` is ``integer`` with an enum of *strings* → enum of integers;
* ``$ref`` is resolved and ``nullable: true`` becomes ``"nullable": true`` on the field.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "data" / "service_index.json"
_MAX_TITLE = 60
_SCHEMA_FORMATS = {
    "schema_format_schema": "schema",
    "schema_format_schema_table": "schema_table",
    "schema_format_schema_prefix": "schema_prefix",
    "schema_format_schema_table_group": "schema_table_group",
}


class _Spec:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.schemas: dict[str, Any] = doc["components"]["schemas"]

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        seen = 0
        while "$ref" in node:
            node = self.schemas[node["$ref"].rsplit("/", 1)[-1]]
            seen += 1
            if seen > 20:
                raise ValueError("reference loop")
        return node

    def field(self, node: dict[str, Any]) -> dict[str, Any]:
        """One property → compact field description."""
        node = self.resolve(node)
        out: dict[str, Any] = {}
        ftype = node.get("type")
        enum = node.get("enum")
        if enum is not None:
            if ftype in (None, "object"):
                ftype = "string"  # quirk: enum fields typed "object"
            if ftype == "integer":
                enum = [int(v) for v in enum]  # quirk: integer with string enum values
            out["enum"] = list(enum)
        if ftype is None and "properties" in node:
            ftype = "object"
        out["type"] = ftype or "any"
        if node.get("format") == "password":
            out["secret"] = True
        if node.get("nullable"):
            out["nullable"] = True
        if node.get("readOnly"):
            out["readonly"] = True
        title = node.get("title") or ""
        if title and len(title) <= _MAX_TITLE:
            out["title"] = title
        if out["type"] == "array" and isinstance(node.get("items"), dict):
            out["items"] = self.field(node["items"])
        if out["type"] == "object" and "enum" not in out and "properties" in node:
            out["properties"] = self.props(node)
            if node.get("required"):
                out["required"] = sorted(node["required"])
        return out

    def props(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self.resolve(node)
        return {k: self.field(v) for k, v in sorted(node.get("properties", {}).items())}

    def section(self, name: str, key: str) -> dict[str, Any] | None:
        schema = self.schemas.get(name)
        if schema is None:
            return None
        inner = schema.get("properties", {}).get(key)
        if inner is None:
            return None
        return self.props(inner)


def build(doc: dict[str, Any]) -> dict[str, Any]:
    """The index as a dict (deterministic)."""
    spec = _Spec(doc)
    suffix = "_NewConnectorRequestV1"
    services: dict[str, Any] = {}
    for name in sorted(spec.schemas):
        if not name.endswith(suffix) or name == suffix[1:]:
            continue
        service = name[: -len(suffix)]
        refs = [r["$ref"].rsplit("/", 1)[-1] for r in spec.schemas[name].get("allOf", [])]
        schema_format = next((_SCHEMA_FORMATS[r] for r in refs if r in _SCHEMA_FORMATS), None)
        if schema_format is None:
            raise ValueError(f"{service}: no schema_format_* member")
        fmt_cfg = spec.schemas[f"schema_format_{schema_format}"]["properties"]["config"]
        entry: dict[str, Any] = {
            "schema_format": schema_format,
            "required": sorted(fmt_cfg.get("required", [])),
            "config": spec.section(f"{service}_config_V1", "config") or {},
            "auth": spec.section(f"{service}_auth_V1", "auth")
            if f"{service}_auth_V1" in refs
            else None,
            "readonly": sorted(spec.section(f"{service}_readonly_config_V1", "config") or {}),
        }
        esm = spec.section(f"{service}_esm_keys_config_V1", "external_secrets_keys_config")
        if esm:
            entry["esm_keys"] = esm
        services[service] = entry

    def common(schema: str) -> dict[str, Any]:
        return spec.props(spec.schemas[schema])

    destinations = sorted(
        n[: -len("_NewDestinationRequest")]
        for n in spec.schemas
        if n.endswith("_NewDestinationRequest") and n != "NewDestinationRequest"
    )
    tags = {t.get("name"): t.get("description") for t in doc.get("tags", []) if "name" in t}
    return {
        "_source": "Generated by app/fivetran/build_index.py from Fivetran's OpenAPI definition "
        f"(info.version {doc.get('info', {}).get('version')}, updated {tags.get('updated')}).",
        "request": {
            "create": common("NewConnectorRequestV1"),
            "update": common("UpdateConnectorRequest"),
        },
        "destinations": destinations,
        "services": services,
    }


def render(doc: dict[str, Any]) -> str:
    """The exact committed text: one line per service, sorted keys."""
    index = build(doc)
    dump = lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"))  # noqa: E731
    lines = ["{"]
    lines.append(f'"_source":{dump(index["_source"])},')
    lines.append(f'"request":{dump(index["request"])},')
    lines.append(f'"destinations":{dump(index["destinations"])},')
    lines.append('"services":{')
    items = list(index["services"].items())
    for i, (service, entry) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"{dump(service)}:{dump(entry)}{comma}")
    lines.append("}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m app.fivetran.build_index <openapi.json> [output]", file=sys.stderr)
        return 2
    doc = json.loads(Path(args[0]).read_text())
    out = Path(args[1]) if len(args) == 2 else OUTPUT
    out.write_text(render(doc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
