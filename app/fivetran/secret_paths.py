"""Where a service's secrets sit in its config: every location, not just top-level names.

Fivetran's definition marks secrets with ``format: password`` anywhere in a config tree:
top-level fields (``postgres.password``), array items (``github.pats[]``), properties of
objects in arrays (``aws_lambda.secrets_list[].value``) and nested objects
(``pendo.aws_credentials.s3_role_arn``). Some secrets are not flagged; a string field whose
name says it is one (password, token, private key, api key, passphrase, secret) counts too.

Two notations:

* a **pattern** names a location in the definition: ``secrets_list[].value``;
* a **path** names a value in one config: ``secrets_list[1].value``, ``pats[0]``.

:func:`split_secrets` takes a submitted config apart into the part we may store (top-level
secrets removed, nested ones replaced by :data:`MASK` so arrays keep their shape) and the
secrets by path (each goes to the vault under ``credentials.<path>``); :func:`merge_secrets`
puts them back, only into the body sent to Fivetran; :func:`mask_config` masks every secret
location of any config (responses, previews, logs).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from app.fivetran.index import FieldSpec, all_services, get_service

MASK = "******"
ITEM = "[]"
_SECRETISH = re.compile(r"(password|secret|token|private_key|api_key|passphrase)", re.I)
_NOT_SECRET = (
    "_at",
    "_date",
    "_url",
    "_type",
    "_method",
    "_id",
    "_name",
    "_expiration",
    "_container",
    "_database",
)
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def is_secret(name: str, spec: FieldSpec) -> bool:
    """A string-valued field the definition flags secret, or whose name says it is one."""
    if spec.secret:
        return True
    return (
        spec.type == "string"
        and spec.enum is None
        and bool(_SECRETISH.search(name))
        and not name.endswith(_NOT_SECRET)
    )


def _walk(name: str, spec: FieldSpec, prefix: tuple[str, ...], out: list[tuple[str, ...]]) -> None:
    here = (*prefix, name)
    if spec.type not in ("object", "array") and is_secret(name, spec):
        out.append(here)
        return
    if spec.type == "array" and spec.items is not None:
        item = spec.items
        if item.type not in ("object", "array") and (item.secret or is_secret(name, spec)):
            out.append((*here, ITEM))
        elif item.properties:
            for key, sub in item.properties.items():
                _walk(key, sub, (*here, ITEM), out)
    if spec.properties:
        for key, sub in spec.properties.items():
            _walk(key, sub, here, out)


def patterns_of(fields: dict[str, FieldSpec]) -> tuple[tuple[str, ...], ...]:
    """Every secret location of a field tree, as segment tuples (``ITEM`` = any array item)."""
    out: list[tuple[str, ...]] = []
    for name, spec in sorted(fields.items()):
        _walk(name, spec, (), out)
    return tuple(out)


@cache
def secret_patterns(service: str) -> tuple[tuple[str, ...], ...]:
    """Every secret location in ``service``'s config (empty for unknown services)."""
    spec = get_service(service)
    return patterns_of(spec.config_fields) if spec is not None else ()


@cache
def stored_patterns(service: str) -> tuple[tuple[str, ...], ...]:
    """:func:`secret_patterns` plus the secret locations of Fivetran's ``auth`` block under
    ``auth`` (``auth.client_secret``, ``auth.client_access.client_secret``): a credential
    form fills that block as the config's ``auth`` object (see
    :mod:`app.sources.auth_forms`), so its secrets are vaulted and masked like the
    config's. Services with a config field named ``auth`` keep their config patterns only."""
    spec = get_service(service)
    if spec is None or not spec.auth_tree or "auth" in spec.config_fields:
        return secret_patterns(service)
    return secret_patterns(service) + tuple(("auth", *p) for p in patterns_of(spec.auth_tree))


def pattern_text(pattern: tuple[str, ...]) -> str:
    """``("secrets_list", "[]", "value")`` → ``secrets_list[].value``."""
    out = ""
    for seg in pattern:
        out += seg if seg == ITEM else (f".{seg}" if out else seg)
    return out


def parse_path(path: str) -> list[str | int]:
    """``secrets_list[1].value`` → ``["secrets_list", 1, "value"]``."""
    return [key if key else int(idx) for key, idx in _TOKEN.findall(path)]


def path_text(parts: list[str | int] | tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _matches(parts: list[str | int], pattern: tuple[str, ...]) -> bool:
    if len(parts) != len(pattern):
        return False
    for part, seg in zip(parts, pattern, strict=True):
        if seg == ITEM:
            if not isinstance(part, int):
                return False
        elif part != seg:
            return False
    return True


def is_secret_path(service: str, path: str) -> bool:
    parts = parse_path(path)
    return any(_matches(parts, p) for p in stored_patterns(service))


def _locations(
    value: Any, pattern: tuple[str, ...], at: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Any]]:
    """(path, value) of every present value at ``pattern`` inside ``value``."""
    if not pattern:
        return [(at, value)]
    seg, rest = pattern[0], pattern[1:]
    if seg == ITEM:
        if not isinstance(value, list):
            return []
        out: list[tuple[tuple[str | int, ...], Any]] = []
        for i, item in enumerate(value):
            out += _locations(item, rest, (*at, i))
        return out
    if not isinstance(value, dict) or seg not in value:
        return []
    return _locations(value[seg], rest, (*at, seg))


def _set(tree: Any, parts: list[str | int] | tuple[str | int, ...], value: Any) -> None:
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nxt: Any = None if last else ([] if isinstance(parts[i + 1], int) else {})
        if isinstance(part, int):
            while len(node) <= part:
                node.append(copy.deepcopy(nxt) if nxt is not None else None)
            if last:
                node[part] = value
            else:
                if not isinstance(node[part], dict | list):
                    node[part] = nxt
                node = node[part]
        else:
            if last:
                node[part] = value
            else:
                if not isinstance(node.get(part), dict | list):
                    node[part] = nxt
                node = node[part]


@dataclass
class Split:
    """A submitted config taken apart; ``errors`` are ``{field, code, message}`` items."""

    stored: dict[str, Any]
    secrets: dict[str, str]
    kept: list[str]
    errors: list[dict[str, str]]


def deep_merge(base: Any, extra: Any) -> Any:
    """``extra`` laid over ``base``: objects key by key, arrays item by item."""
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            out[key] = deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(extra, list):
        merged = [
            deep_merge(base[i], extra[i]) if i < len(base) else copy.deepcopy(extra[i])
            for i in range(len(extra))
        ]
        return merged + copy.deepcopy(base[len(extra) :])
    return copy.deepcopy(extra)


def _leaves(value: Any, at: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*at, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*at, i))]
    return [at]


def split_secrets(
    service: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None = None,
    *,
    allow_kept: bool = False,
) -> Split:
    """Take ``config`` (+ ``credentials``, the same shape holding only secrets) apart.

    Every leaf of ``credentials`` must sit at a secret location. A secret must be a
    non-empty string; with ``allow_kept`` the value ``"******"`` means "keep the stored
    one" (its path is listed in ``kept``, for a PATCH that echoes a masked config back).
    """
    errors: list[dict[str, str]] = []
    patterns = stored_patterns(service)
    for leaf in _leaves(credentials or {}):
        if not leaf:
            continue
        if not any(_matches(list(leaf), p) for p in patterns):
            errors.append(
                {
                    "field": "credentials." + path_text(leaf),
                    "code": "unknown_config_field",
                    "message": f"'{path_text(leaf)}' is not a secret field of '{service}'",
                }
            )
    merged = deep_merge(config, credentials or {}) if credentials else copy.deepcopy(config)
    secrets: dict[str, str] = {}
    kept: list[str] = []
    for pattern in patterns:
        for parts, value in _locations(merged, pattern):
            path = path_text(parts)
            if value is None:
                continue
            if allow_kept and value == MASK:
                kept.append(path)
            elif not isinstance(value, str) or not value:
                errors.append(
                    {
                        "field": f"config.{path}",
                        "code": "invalid_config",
                        "message": f"'{path}' must be a non-empty string",
                    }
                )
                continue
            else:
                secrets[path] = value
            _set(merged, parts, MASK)
    stored = {k: v for k, v in merged.items() if v != MASK}
    return Split(stored=stored, secrets=secrets, kept=kept, errors=errors)


def merge_secrets(config: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """A copy of a stored config with the secrets back at their paths (Fivetran bodies only)."""
    out = copy.deepcopy(config)
    for path, value in sorted(secrets.items()):
        _set(out, parse_path(path), value)
    return out


def mask_config(service: str, config: Any) -> Any:
    """A copy of ``config`` with every secret location (of ``service``) → ``"******"``."""
    if not isinstance(config, dict):
        return config
    out = copy.deepcopy(config)
    for pattern in stored_patterns(service):
        for parts, value in _locations(out, pattern):
            if value is not None:
                _set(out, parts, MASK)
    return out


def all_patterns() -> dict[str, list[str]]:
    """``{service: [pattern, …]}`` of every service with at least one secret (reports, tests)."""
    return {
        s: [pattern_text(p) for p in secret_patterns(s)]
        for s in all_services()
        if secret_patterns(s)
    }
