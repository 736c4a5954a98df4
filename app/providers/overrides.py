"""Operator overrides of catalog providers: one validated path for every provider field.

``PBF_OAUTH__APPS__<KEY>__<FIELD>`` may set any :class:`~app.providers.spec.ProviderSpec`
field of a catalog provider (``TOKEN_AUTH_METHOD``, ``REQUIRED_SCOPES``, ``ISSUER``,
``AUTHORIZATION_RESPONSE_ISS`` …) next to the app's own settings (``CLIENT_ID`` …). Values
given as environment strings are JSON-decoded where the field is not a string (lists,
mappings, booleans). The overridden provider is validated as a whole, like a catalog entry;
an unknown key is a startup problem naming the environment variable — never silently
ignored.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from app.config import OAuthAppSettings
from app.providers.spec import ProviderSpec

#: Settings of the OAuth app itself (not provider fields).
APP_KEYS = frozenset(
    {"client_id", "client_secret", "client_secret_file", "client_secret_in_vault", "extras"}
)
#: Provider fields an override must not change (they identify the provider).
FIXED = frozenset({"fivetran_service", "replaces"})
#: The override fields ``OAuthAppSettings`` declares explicitly (documented in the README).
DECLARED = ("issuer", "authorization_url", "token_url", "revocation_url", "scopes")


def _env(key: str, name: str) -> str:
    return f"PBF_OAUTH__APPS__{key.upper()}__{name.upper()}"


def override_values(key: str, app: OAuthAppSettings, problems: list[str]) -> dict[str, Any]:
    """The provider fields ``app`` overrides (unknown keys reported in ``problems``)."""
    values: dict[str, Any] = {n: getattr(app, n) for n in DECLARED if getattr(app, n) is not None}
    fields = ProviderSpec.model_fields
    for name, raw in (app.model_extra or {}).items():
        if name not in fields or name in FIXED:
            allowed = sorted(set(fields) - FIXED)
            problems.append(
                f"{_env(key, name)}: unknown setting {name!r} (an app takes "
                f"{', '.join(sorted(APP_KEYS))}; overridable provider fields: "
                f"{', '.join(allowed)})"
            )
            continue
        annotation = str(fields[name].annotation)
        if isinstance(raw, str) and not annotation.startswith(("str", "<class 'str'>")):
            try:
                raw = json.loads(raw)
            except ValueError:
                pass  # validated (and reported) with the whole provider below
        values[name] = raw
    return values


def apply_overrides(
    key: str, spec: ProviderSpec, values: dict[str, Any], problems: list[str]
) -> ProviderSpec:
    """``spec`` with ``values`` applied, validated as a whole (problems name the variable)."""
    if not values:
        return spec
    data = spec.model_dump()
    data.update(values)
    try:
        return ProviderSpec.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "(provider)"
            problems.append(f"{_env(key, name)}: {err['msg']}")
        return spec
