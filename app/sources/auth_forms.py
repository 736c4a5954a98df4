"""Sources whose Fivetran ``auth`` block is filled by a form.

Services that accept an API ``auth`` block but authorize without a consent redirect (client
credentials, JWT assertions, API keys, client certificates, OAuth 1.0a tokens) are offered
with the ``credentials`` route. Their form (``config_schema``) has one more object property,
``auth``, in the auth block's own shape (``auth.api_key``,
``auth.client_access.client_id``): the end-user's config carries it like any nested object,
its secret leaves are vaulted and masked by path (:func:`app.fivetran.secret_paths.
stored_patterns`; they may come in ``credentials`` too), and :func:`split_auth_block` moves
it out of the config into the ``auth`` block of the Fivetran request.
"""

from __future__ import annotations

from typing import Any

from app.fivetran.index import FieldSpec, ServiceSpec
from app.fivetran.secret_paths import is_secret

#: The form property (and config key) holding the auth block.
AUTH_KEY = "auth"


def _leaf(name: str, node: FieldSpec) -> dict[str, Any]:
    prop = node.to_json_schema()
    prop.setdefault("title", name.replace("_", " ").capitalize())
    if is_secret(name, node):
        prop["writeOnly"] = True
        prop["format"] = "password"
    return prop


def auth_block_schema(spec: ServiceSpec, paths: tuple[str, ...]) -> dict[str, Any]:
    """The JSON Schema of the auth-block object with the given ``paths`` of ``spec``'s auth
    tree (``client_secret``, ``client_access.client_id``); unknown paths are skipped."""
    tree = spec.auth_tree or {}
    props: dict[str, Any] = {}
    for path in paths:
        head, _, leaf = path.partition(".")
        node = tree.get(head)
        if node is None:
            continue
        if not leaf:
            props[head] = _leaf(head, node)
            continue
        sub = (node.properties or {}).get(leaf)
        if sub is None:
            continue
        obj = props.setdefault(
            head,
            {
                "type": "object",
                "title": node.title or head.replace("_", " ").capitalize(),
                "properties": {},
                "additionalProperties": False,
            },
        )
        obj["properties"][leaf] = _leaf(leaf, sub)
    return {
        "type": "object",
        "title": "Authorization",
        "description": "Fivetran's auth block for this source.",
        "properties": props,
        "additionalProperties": False,
    }


def add_auth_block(schema: dict[str, Any], spec: ServiceSpec, paths: tuple[str, ...]) -> None:
    """Add the ``auth`` object (its own group, last in the form) to a form schema."""
    schema["properties"][AUTH_KEY] = auth_block_schema(spec, paths)
    schema["x-order"].append(AUTH_KEY)
    schema["x-groups"].append(
        {"id": "authorization", "title": "Authorization", "fields": [AUTH_KEY]}
    )


def split_auth_block(
    values: dict[str, Any], *, fills_auth: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(config without ``auth``, the auth block or None) — only for sources whose form fills
    the auth block (``fills_auth``); other configs pass unchanged."""
    if not fills_auth or AUTH_KEY not in values:
        return values, None
    config = {k: v for k, v in values.items() if k != AUTH_KEY}
    auth = values[AUTH_KEY]
    return config, (auth if isinstance(auth, dict) and auth else None)
