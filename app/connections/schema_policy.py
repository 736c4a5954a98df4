"""The platform's schema policy and how it filters what callers ask for.

``OnboardingSettings.schema_policy``:

* ``schema_change_handling`` — the most permissive handling a connection may have
  (``BLOCK_ALL`` < ``ALLOW_COLUMNS`` < ``ALLOW_ALL``); applied at creation.
* ``blocked_tables`` — ``schema.table`` glob patterns that are never enabled.
* ``hashed_columns`` — ``schema.table.column`` glob patterns that are always hashed.

At creation the policy is written to Fivetran as is. Afterwards ``PATCH …/schema`` accepts
what the policy permits and reports every refused item as ``{path, reason}``. A policy
changed later is brought onto existing connections by the fleet operation
(:mod:`app.connections.fleet`), which sends :func:`fleet_patch` — only what is out of policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from app.config import SchemaPolicy

_HANDLING_ORDER = {"BLOCK_ALL": 0, "ALLOW_COLUMNS": 1, "ALLOW_ALL": 2}


def table_blocked(policy: SchemaPolicy, schema: str, table: str) -> bool:
    return any(fnmatchcase(f"{schema}.{table}", p) for p in policy.blocked_tables)


def column_hashed(policy: SchemaPolicy, schema: str, table: str, column: str) -> bool:
    return any(fnmatchcase(f"{schema}.{table}.{column}", p) for p in policy.hashed_columns)


def _exact_columns(policy: SchemaPolicy, schema: str, table: str) -> list[str]:
    out = []
    for pattern in policy.hashed_columns:
        if any(ch in pattern for ch in "*?["):
            continue
        parts = pattern.split(".")
        if len(parts) == 3 and parts[0] == schema and parts[1] == table:
            out.append(parts[2])
    return out


def creation_patch(policy: SchemaPolicy, current: dict[str, Any]) -> dict[str, Any]:
    """The schema-config PATCH that puts a fresh connection under the policy."""
    body: dict[str, Any] = {"schema_change_handling": policy.schema_change_handling}
    schemas: dict[str, Any] = {}
    for s_name, s_cfg in (current.get("schemas") or {}).items():
        tables: dict[str, Any] = {}
        for t_name, t_cfg in (s_cfg.get("tables") or {}).items():
            t_patch: dict[str, Any] = {}
            if table_blocked(policy, s_name, t_name) and t_cfg.get("enabled", True):
                t_patch["enabled"] = False
            columns: dict[str, Any] = {}
            known = t_cfg.get("columns") or {}
            for c_name, c_cfg in known.items():
                if column_hashed(policy, s_name, t_name, c_name) and not c_cfg.get("hashed"):
                    columns[c_name] = {"enabled": c_cfg.get("enabled", True), "hashed": True}
            # Fivetran lists only touched columns: name exact-pattern columns explicitly.
            for c_name in _exact_columns(policy, s_name, t_name):
                if c_name not in known:
                    columns[c_name] = {"enabled": True, "hashed": True}
            if columns:
                t_patch["columns"] = columns
            if t_patch:
                t_patch.setdefault("enabled", t_cfg.get("enabled", True))
                tables[t_name] = t_patch
        if tables:
            schemas[s_name] = {"enabled": s_cfg.get("enabled", True), "tables": tables}
    if schemas:
        body["schemas"] = schemas
    return body


def fleet_patch(policy: SchemaPolicy, current: dict[str, Any]) -> dict[str, Any]:
    """The schema-config PATCH that brings an existing connection under the policy, or ``{}``
    when it already complies.

    Unlike :func:`creation_patch` it keeps a handling that is stricter than the policy's
    ceiling (the end-user or an operator chose it) and lowers only a more permissive one."""
    body = creation_patch(policy, current)
    have = current.get("schema_change_handling")
    if have in _HANDLING_ORDER and (
        _HANDLING_ORDER[have] <= _HANDLING_ORDER[policy.schema_change_handling]
    ):
        body.pop("schema_change_handling")
    return body


def summarize_patch(body: dict[str, Any]) -> dict[str, Any]:
    """What a policy PATCH changes, in names only: handling, tables disabled, columns hashed."""
    tables: list[str] = []
    columns: list[str] = []
    for s_name, s_cfg in (body.get("schemas") or {}).items():
        for t_name, t_cfg in (s_cfg.get("tables") or {}).items():
            if t_cfg.get("enabled") is False:
                tables.append(f"{s_name}.{t_name}")
            for c_name, c_cfg in (t_cfg.get("columns") or {}).items():
                if c_cfg.get("hashed"):
                    columns.append(f"{s_name}.{t_name}.{c_name}")
    out: dict[str, Any] = {}
    if "schema_change_handling" in body:
        out["schema_change_handling"] = body["schema_change_handling"]
    if tables:
        out["tables_disabled"] = tables
    if columns:
        out["columns_hashed"] = columns
    return out


@dataclass
class Filtered:
    """A caller's schema PATCH after the policy: what goes to Fivetran, what was refused."""

    body: dict[str, Any]
    refused: list[dict[str, str]] = field(default_factory=list)


def filter_request(
    policy: SchemaPolicy, requested: dict[str, Any], current: dict[str, Any]
) -> Filtered:
    """Keep what the policy permits from a caller's schema PATCH; list the rest.

    ``current`` is the connection's schema config at Fivetran; it supplies the ``enabled``
    values Fivetran requires at every level when the caller did not set them.
    """
    out = Filtered(body={})
    handling = requested.get("schema_change_handling")
    if handling is not None:
        if _HANDLING_ORDER[handling] > _HANDLING_ORDER[policy.schema_change_handling]:
            out.refused.append(
                {
                    "path": "schema_change_handling",
                    "reason": f"policy allows at most {policy.schema_change_handling}",
                }
            )
        else:
            out.body["schema_change_handling"] = handling
    schemas: dict[str, Any] = {}
    for s_name, s_req in (requested.get("schemas") or {}).items():
        s_out: dict[str, Any] = {}
        if "enabled" in s_req:
            s_out["enabled"] = s_req["enabled"]
        tables: dict[str, Any] = {}
        for t_name, t_req in (s_req.get("tables") or {}).items():
            t_out: dict[str, Any] = {}
            path = f"{s_name}.{t_name}"
            if t_req.get("enabled") is True and table_blocked(policy, s_name, t_name):
                out.refused.append({"path": path, "reason": "table is blocked by policy"})
            elif "enabled" in t_req:
                t_out["enabled"] = t_req["enabled"]
            columns: dict[str, Any] = {}
            for c_name, c_req in (t_req.get("columns") or {}).items():
                c_out = {k: v for k, v in c_req.items() if k in ("enabled", "hashed")}
                if c_req.get("hashed") is False and column_hashed(policy, s_name, t_name, c_name):
                    out.refused.append(
                        {"path": f"{path}.{c_name}", "reason": "column is always hashed by policy"}
                    )
                    c_out.pop("hashed")
                if c_out:
                    columns[c_name] = c_out
            if columns:
                t_out["columns"] = columns
            if t_out:
                tables[t_name] = t_out
        if tables:
            s_out["tables"] = tables
        if s_out:
            schemas[s_name] = s_out
    if schemas:
        out.body["schemas"] = _with_enabled(policy, schemas, current)
    return out


def _with_enabled(
    policy: SchemaPolicy, schemas: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """Fivetran requires ``enabled`` at every level of a schema PATCH: take the current one."""
    cur_schemas = current.get("schemas") or {}
    for s_name, s_cfg in schemas.items():
        cur_s = cur_schemas.get(s_name) or {}
        s_cfg.setdefault("enabled", cur_s.get("enabled", True))
        cur_tables = cur_s.get("tables") or {}
        for t_name, t_cfg in (s_cfg.get("tables") or {}).items():
            cur_t = cur_tables.get(t_name) or {}
            default = cur_t.get("enabled", True) and not table_blocked(policy, s_name, t_name)
            t_cfg.setdefault("enabled", default)
            cur_cols = cur_t.get("columns") or {}
            for c_name, c_cfg in (t_cfg.get("columns") or {}).items():
                c_cfg.setdefault("enabled", (cur_cols.get(c_name) or {}).get("enabled", True))
    return schemas


def describe(policy: SchemaPolicy) -> dict[str, Any]:
    return {
        "schema_change_handling": policy.schema_change_handling,
        "blocked_tables": list(policy.blocked_tables),
        "hashed_columns": list(policy.hashed_columns),
    }
