"""Generate ``app/fivetran/data/field_docs.json``: per service, each config field's description.

Run from the repository root::

    python -m app.fivetran.build_field_docs /path/to/tf-config-fields.json

The source is Fivetran's field dictionary (``fivetran/common/fields.json`` of their Terraform
provider: field → per-service description). Only services and top-level fields of the index
are kept, and each description is cut to its first :data:`_MAX` characters at a sentence end,
so forms can show it as help text. One line per service, sorted (deterministic).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from app.fivetran.index import all_services, get_service

OUTPUT = Path(__file__).resolve().parent / "data" / "field_docs.json"
_MAX = 280


def _short(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= _MAX:
        return text
    cut = text[:_MAX]
    end = max(cut.rfind(". "), cut.rfind(".`"))
    return cut[: end + 1] if end > 40 else cut.rstrip() + "…"


def build(fields: dict[str, Any]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for service in all_services():
        spec = get_service(service)
        assert spec is not None
        docs = {}
        for name in sorted(spec.config_fields):
            text = (fields.get(name, {}).get("description") or {}).get(service) or ""
            if text.strip():
                docs[name] = _short(text)
        if docs:
            out[service] = docs
    return out


def render(fields: dict[str, Any]) -> str:
    data = build(fields)
    lines = ["{"]
    items = list(data.items())
    for i, (service, docs) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        lines.append(f"{json.dumps(service)}:{json.dumps(docs, sort_keys=True)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m app.fivetran.build_field_docs <tf-config-fields.json>")
        return 2
    OUTPUT.write_text(render(json.loads(Path(args[0]).read_text())))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
