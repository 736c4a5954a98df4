"""Sources whose Fivetran ``auth`` block is filled by a form, and provider facts per source.

Services that accept an API ``auth`` block but authorize without a consent redirect (client
credentials, JWT assertions, API keys, client certificates, OAuth 1.0a tokens) are offered
with the ``credentials`` route: the form has one field per auth-block path, named
``auth.<path>`` (``auth.api_key``, ``auth.client_access.client_id``), which
:func:`split_auth_fields` moves from the config into the ``auth`` block of the Fivetran
request.
"""

from __future__ import annotations

import re
from typing import Any

from app.fivetran.index import ServiceSpec

AUTH_PREFIX = "auth."
_SECRET = re.compile(r"(secret|token|key|password|private)", re.I)


def is_secret_auth_field(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return bool(_SECRET.search(leaf)) and not leaf.endswith(("_id", "_url", "_scope"))


def auth_form_properties(spec: ServiceSpec, paths: tuple[str, ...]) -> dict[str, Any]:
    """JSON-Schema properties (``auth.<path>``) for the auth-block paths of ``spec``."""
    props: dict[str, Any] = {}
    tree = spec.auth_tree or {}
    for path in paths:
        head, _, leaf = path.partition(".")
        node = tree.get(head)
        if node is not None and leaf:
            node = (node.properties or {}).get(leaf)
        if node is None:
            continue
        prop = node.to_json_schema()
        prop.setdefault("title", path.replace("_", " ").replace(".", " › "))
        if is_secret_auth_field(path):
            prop["writeOnly"] = True
            prop["format"] = "password"
        props[AUTH_PREFIX + path] = prop
    return props


def split_auth_fields(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(config without ``auth.*`` fields, the nested auth block or None)."""
    config: dict[str, Any] = {}
    auth: dict[str, Any] = {}
    for key, value in values.items():
        if not key.startswith(AUTH_PREFIX):
            config[key] = value
            continue
        head, _, leaf = key[len(AUTH_PREFIX) :].partition(".")
        if leaf:
            auth.setdefault(head, {})[leaf] = value
        else:
            auth[head] = value
    return config, (auth or None)
