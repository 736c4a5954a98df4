"""The OpenAPI document as a contract a client generator can use.

FastAPI's own document misses what generators need; :func:`install_openapi` finishes it once
per app (and ``pbf-headless openapi`` writes the result):

* a ``bearerAuth`` security scheme, required by every operation that takes an API key
  (declared by the API-key dependency itself, so a new route cannot forget it) and ``security: []``
  on the public ones (health, metrics, the end-user's connect pages, OAuth callback,
  Fivetran's signed webhooks);
* every error as ``application/problem+json`` with the :data:`PROBLEM_SCHEMA` (RFC 9457 plus
  our ``code``, ``field`` and ``errors: [{field, code, message}]``), FastAPI's
  ``{detail: [...]}`` validation schema removed, and the statuses an operation can give:
  401/403 with an API key, 404 with a path parameter, 409 on writes, 422 with any input,
  429/502/503 where Fivetran or a provider is called;
* enums for connection states, auth methods and event types;
* an example on every operation (request and success response), from the models' own
  examples where they have them, else built from the schema;
* readable ``operationId`` values (the handler's name).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from app.connections import states
from app.dependencies import API_KEY_SCOPE
from app.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE
from app.events.kinds import EVENT_KINDS

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; ``code`` is stable, switch on it.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine code."},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "The (first) offending field, if any."},
        "errors": {
            "type": "array",
            "description": "Every offending field at once (422).",
            "items": {"$ref": "#/components/schemas/FieldError"},
        },
    },
    "additionalProperties": True,
}
FIELD_ERROR_SCHEMA: dict[str, Any] = {
    "title": "FieldError",
    "type": "object",
    "required": ["field", "code", "message"],
    "properties": {
        "field": {"type": "string", "examples": ["config.host"]},
        "code": {"type": "string", "examples": ["missing_config_field"]},
        "message": {"type": "string"},
    },
    "additionalProperties": True,
}

_STATUS_TEXT = {
    400: ("bad_request", "Bad request", "Malformed request."),
    401: ("unauthorized", "Authentication required", "Missing or invalid API key."),
    403: ("forbidden", "Forbidden", "The API key lacks the scope."),
    404: ("not_found", "Not found", "Unknown, deleted or foreign resource."),
    409: ("conflict", "Conflict", "Conflicting state (idempotency key, state machine)."),
    413: ("payload_too_large", "Payload too large", "Request body too large."),
    422: (
        "invalid_config",
        "Invalid input",
        "Invalid input; ``errors`` names every offending field.",
    ),
    429: ("rate_limited", "Too many requests", "Rate limited; honour ``Retry-After``."),
    502: ("upstream_error", "Upstream service error", "Fivetran or the source app failed."),
    503: ("fivetran_unavailable", "Service unavailable", "Retry (same Idempotency-Key)."),
}
_TIME = "2026-11-30T12:00:00Z"
_CONNECTION = {
    "id": "con_8Zk1v3qL0aJ2",
    "end_user": "acme",
    "service": "postgres",
    "auth_method": "credentials",
    "state": "connected",
    "state_reason": "setup_tests_passed",
    "fivetran_connection_id": "decent_dropsy",
    "group_id": "projected_sickle",
    "schema": "postgres",
    "setup_state": "connected",
    "sync_state": "scheduled",
    "setup_tests": [{"title": "Connecting to host", "status": "PASSED", "message": ""}],
    "paused": False,
    "sync_frequency": 360,
    "daily_sync_time": None,
    "config": {"host": "db.example.com", "port": 5432, "database": "app", "user": "fivetran"},
    "credentials_set": ["password"],
    "last_sync_succeeded_at": None,
    "last_sync_failed_at": None,
    "created_at": _TIME,
    "updated_at": _TIME,
}
#: Hand-written examples of the main models (the rest are built from their schemas).
MODEL_EXAMPLES: dict[str, Any] = {
    "EndUserPut": {"name": "Acme Inc."},
    "EndUserOut": {
        "external_id": "acme",
        "name": "Acme Inc.",
        "status": "active",
        "group_strategy": "per_end_user",
        "fivetran_group_id": "projected_sickle",
        "destination": None,
        "created_at": _TIME,
        "updated_at": _TIME,
    },
    "ConnectionCreate": {
        "end_user": "acme",
        "service": "postgres",
        "config": {"host": "db.example.com", "port": 5432, "database": "app", "user": "fivetran"},
        "credentials": {"password": "s3cret"},
    },
    "ConnectionOut": _CONNECTION,
    "ConnectionPage": {"items": [_CONNECTION], "next_cursor": None},
    "ConnectionPatch": {"paused": False, "sync_frequency": 360},
    "PreviewIn": {
        "end_user": "acme",
        "service": "github",
        "config": {"auth_mode": "PersonalAccessToken", "sync_mode": "AllRepositories"},
        "credentials": {"pats": ["ghp_…"]},
    },
    "PreviewOut": {
        "service": "github",
        "body": {
            "service": "github",
            "group_id": "projected_sickle",
            "paused": True,
            "config": {"schema": "github", "pats": ["******"], "sync_mode": "AllRepositories"},
        },
    },
    "ConnectSessionCreate": {
        "end_user": "acme",
        "service": "salesforce",
        "return_to": "https://app.example.com/onboarding/done",
    },
    "SourceOut": {
        "service": "stripe",
        "name": "Stripe",
        "auth_method": "credentials",
        "config_schema": {
            "type": "object",
            "properties": {
                "api_key": {"type": "string", "title": "API key", "writeOnly": True},
            },
            "required": ["api_key"],
        },
    },
}
_MEDIA_EXAMPLES = {
    "text/html": "<!doctype html><html lang=en>…</html>",
    "text/plain": "# HELP pbf_http_requests_total …",
}
#: Operations that call Fivetran or a source app (429/502/503 possible).
_UPSTREAM_TAGS = {"connections", "end-users", "connect-sessions", "connect", "oauth"}
_ENUMS: dict[tuple[str, str], list[str]] = {}


def _enums() -> dict[tuple[str, str], list[str]]:
    if not _ENUMS:
        _ENUMS.update(
            {
                ("ConnectionOut", "state"): list(states.STATES),
                ("ConnectionOut", "auth_method"): ["oauth2", "oauth1", "credentials"],
                ("SourceOut", "auth_method"): ["oauth2", "oauth1", "credentials"],
                ("EventOut", "type"): list(EVENT_KINDS),
            }
        )
    return _ENUMS


def _problem_example(status: int) -> dict[str, Any]:
    code, title, _ = _STATUS_TEXT[status]
    example: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": _STATUS_TEXT[status][2].replace("``", ""),
        "code": code,
    }
    if status == 422:
        example["code"] = "missing_config_field"
        example["detail"] = "2 fields are invalid: …"
        example["field"] = "config.host"
        example["errors"] = [
            {"field": "config.host", "code": "missing_config_field", "message": "…"},
            {"field": "config.user", "code": "missing_config_field", "message": "…"},
        ]
    return example


def _example_of(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """An example value built from a schema (its own examples first)."""
    if depth > 6:
        return None
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _example_of(components.get(name, {}), components, depth + 1)
    for key in ("example", "default"):
        if schema.get(key) is not None:
            return copy.deepcopy(schema[key])
    if schema.get("examples"):
        return copy.deepcopy(schema["examples"][0])
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            if options:
                return _example_of(options[0], components, depth + 1)
            return None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        wanted = schema.get("required", list(props))
        return {
            k: _example_of(v, components, depth + 1)
            for k, v in props.items()
            if k in wanted or depth == 0
        }
    if kind == "array":
        return [_example_of(schema.get("items", {}), components, depth + 1)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "string":
        return {"date-time": "2026-11-30T12:00:00Z", "uri": "https://example.com/x"}.get(
            schema.get("format", ""), "string"
        )
    return None


def _operation_id(op_id: str, path: str, method: str) -> str:
    """FastAPI's ``name_v1_path_method`` id → ``name`` (the handler's name)."""
    suffix = re.sub(r"\W", "_", path) + f"_{method}"
    return op_id[: -len(suffix)] if op_id.endswith(suffix) and op_id != suffix else op_id


def finish(doc: dict[str, Any], keyed: set[tuple[str, str]]) -> dict[str, Any]:
    """The generator-ready document (see module doc); ``doc`` is FastAPI's, ``keyed`` the
    ``(path, method)`` of the operations that take an API key."""
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas["FieldError"] = FIELD_ERROR_SCHEMA
    components["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (``pbf-headless api-keys create``) as a bearer token.",
        }
    }
    for model, example in MODEL_EXAMPLES.items():
        if model in schemas:
            schemas[model]["examples"] = [example]
    for (model, prop), values in _enums().items():
        target = schemas.get(model, {}).get("properties", {}).get(prop)
        if target is not None:
            target.pop("anyOf", None)
            target["type"] = "string"
            target["enum"] = values
    ops_all = [
        (path, method, op)
        for path, ops in doc.get("paths", {}).items()
        for method, op in ops.items()
    ]
    short = [_operation_id(op.get("operationId", ""), p, m) for p, m, op in ops_all]
    for (path, method, op), name in zip(ops_all, short, strict=True):
        if name and short.count(name) == 1:
            op["operationId"] = name
        # Operations that depend on the API-key dependency require ``bearerAuth``; the rest
        # is public.
        keyed_op = (path, method) in keyed
        op["security"] = [{"bearerAuth": []}] if keyed_op else []
        statuses: set[int] = set()
        if keyed_op:
            statuses |= {401, 403}
        if "{" in path:
            statuses.add(404)
        has_input = bool(op.get("parameters") or op.get("requestBody"))
        if has_input:
            statuses.add(422)
        if method in ("post", "put", "patch", "delete") and keyed_op:
            statuses.add(409)
        if op.get("requestBody"):
            statuses.add(413)
        if set(op.get("tags", [])) & _UPSTREAM_TAGS and keyed_op:
            statuses |= {429, 502, 503}
        responses = op.setdefault("responses", {})
        # Router-wide declarations are too broad; keep only the ones no rule derives.
        statuses |= {int(c) for c in responses if c.isdigit() and int(c) in (400, 404, 503)}
        if not has_input:
            statuses.discard(422)  # FastAPI adds it for hidden header parameters
        for code in [c for c in responses if c.isdigit() and int(c) >= 400]:
            if int(code) not in statuses:
                del responses[code]
        for status in sorted(statuses):
            if status not in _STATUS_TEXT:
                continue
            entry = responses.get(str(status), {})
            responses[str(status)] = {
                "description": entry.get("description")
                if entry.get("description") not in (None, "Validation Error")
                else _STATUS_TEXT[status][2],
                "content": {
                    PROBLEM_MEDIA_TYPE: {
                        "schema": {"$ref": "#/components/schemas/Problem"},
                        "example": _problem_example(status),
                    }
                },
            }
        for code, entry in responses.items():
            if not code.isdigit() or int(code) >= 400:
                continue
            for kind, media in entry.get("content", {}).items():
                if "example" not in media:
                    media["example"] = (
                        _example_of(media["schema"], schemas)
                        if media.get("schema")
                        else _MEDIA_EXAMPLES.get(kind, "")
                    )
        body = op.get("requestBody", {}).get("content", {})
        for media in body.values():
            if "schema" in media and "example" not in media:
                media["example"] = _example_of(media["schema"], schemas)
    return doc


def _takes_api_key(dependant: Dependant) -> bool:
    return any(
        hasattr(dep.call, API_KEY_SCOPE) or _takes_api_key(dep) for dep in dependant.dependencies
    )


def leaf_routes(app: FastAPI) -> Iterator[tuple[int, BaseRoute]]:
    """Every route of ``app`` with the index of the top-level entry it sits under (FastAPI
    keeps an included router nested: its routes are found through ``original_router``)."""

    def walk(route: BaseRoute, top: int) -> Iterator[tuple[int, BaseRoute]]:
        inner = getattr(route, "original_router", None)
        if inner is None:
            yield top, route
            return
        for sub in inner.routes:
            yield from walk(sub, top)

    for top, route in enumerate(app.router.routes):
        yield from walk(route, top)


def keyed_operations(app: FastAPI) -> set[tuple[str, str]]:
    """``(path, method)`` of every operation whose dependencies include the API-key one
    (:func:`app.dependencies.require_scope`)."""
    return {
        (route.path_format, method.lower())
        for _, route in leaf_routes(app)
        if isinstance(route, APIRoute) and _takes_api_key(route.dependant)
        for method in route.methods or ()
    }


def install_openapi(app: FastAPI) -> None:
    """Serve the finished document at ``/openapi.json`` (built once, cached by FastAPI)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = original()
            app.openapi_schema = finish(doc, keyed_operations(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
