"""Reference of every setting (env var, type, default, meaning), generated from ``Settings``.

``pbf-headless settings`` prints it as a Markdown table; the README's configuration table is
this output, and a test keeps the two in step.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from app.config import Settings


@dataclass(frozen=True)
class SettingDoc:
    env: str
    type: str
    default: str
    description: str


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (list, tuple):
        items = typing.get_args(annotation)
        return f"list[{_type_name(items[0])}]" if items else "list"
    if origin is dict:
        return "JSON object"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        try:
            value = field.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return ""
        if isinstance(value, BaseModel):
            return ""
        return json.dumps(value, default=str) if value not in ([], {}) else "(empty)"
    if field.default is PydanticUndefined:
        return "(required)"
    if field.default is None:
        return "(unset)"
    if isinstance(field.default, SecretStr):
        return "(secret)"
    return str(field.default)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def settings_reference() -> list[SettingDoc]:
    out: list[SettingDoc] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            nested = _model_of(annotation)
            env = f"{prefix}{name.upper()}"
            if nested is not None:
                walk(nested, f"{env}__")
                continue
            aliases = []
            va = field.validation_alias
            if va is not None and hasattr(va, "choices"):
                aliases = [c for c in va.choices if isinstance(c, str) and c.isupper()]
            env_names = aliases or [env]
            out.append(
                SettingDoc(
                    env=" / ".join(dict.fromkeys(env_names)),
                    type=_type_name(annotation),
                    default=_default(field),
                    description=(field.description or "").replace("\n", " "),
                )
            )

    walk(Settings, "PBF_")
    return out


def settings_markdown() -> str:
    rows = ["| setting (env var) | type | default | meaning |", "|---|---|---|---|"]
    for d in settings_reference():
        cells = [f"`{d.env}`", d.type, d.default, d.description]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"
