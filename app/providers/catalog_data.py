"""The shipped provider catalog as data: hand-written ``catalog.yaml`` + generated entries.

``catalog_generated.yaml`` is produced by :mod:`app.providers.build_catalog` from the facts
file; hand-written entries win for their service. Every entry carries the verification status
of its facts (``verification:``). Services whose auth block is not filled by a consent
redirect are listed in :func:`credential_services` (their route is a credential form).
``pickers.yaml`` holds the post-consent configuration (account pickers) of the providers
that need one, merged into their entries as ``picker:``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import yaml

from app.providers.errors import ProviderConfigError
from app.providers.spec import Verification


@cache
def _read(name: str) -> dict[str, Any]:
    # Parsed once per process: the files ship with the code and never change under it (one
    # cache slot per file: catalog, generated catalog, pickers, identity).
    text = resources.files("app.providers").joinpath(name).read_text("utf-8")
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ProviderConfigError([f"{name} must be a mapping"])
    return data


def _generated() -> dict[str, Any]:
    return _read("catalog_generated.yaml")


def identity_data() -> dict[str, Any]:
    """``identity.yaml``: each catalog provider's account-identity source (keys starting
    with ``_`` are YAML anchors, not providers)."""
    return {k: v for k, v in _read("identity.yaml").items() if not str(k).startswith("_")}


@cache
def _merged_catalog() -> dict[str, Any]:
    # The merged entries, built once per process and shared: never handed out (callers get
    # a deep copy from load_catalog_data), never changed.
    hand = _read("catalog.yaml")
    generated = _generated()
    facts: dict[str, Any] = generated.get("verification") or {}
    data: dict[str, Any] = {k: dict(v) for k, v in (generated.get("providers") or {}).items()}
    for key, entry in hand.items():
        if isinstance(entry, dict) and "verification" not in entry:
            status = facts.get(str(entry.get("fivetran_service")))
            entry = {**entry, "verification": status} if status else entry
        data[key] = entry
    for key, picker in (_read("pickers.yaml") or {}).items():
        if key in data and isinstance(data[key], dict) and "picker" not in data[key]:
            data[key] = {**data[key], "picker": picker}
    identities = identity_data()
    for key, entry in data.items():
        if isinstance(entry, dict) and "identity" not in entry and key in identities:
            data[key] = {**entry, "identity": identities[key]}
    return data


def load_catalog_data() -> dict[str, Any]:
    """Every catalog provider entry (raw data, validated by the registry builder); a fresh
    copy each call. Each entry gets its ``identity`` from ``identity.yaml`` unless it
    declares one itself."""
    return copy.deepcopy(_merged_catalog())  # a fresh copy each call, so callers may change it


def load_verification() -> dict[str, Any]:
    """``{service: verification facts}`` of every record of the facts file (raw data)."""
    return copy.deepcopy(dict(_generated().get("verification") or {}))


def hand_written_keys() -> list[str]:
    """Keys of the hand-written providers (``catalog.yaml``: the ones with named quirks)."""
    return sorted(_read("catalog.yaml"))


@dataclass(frozen=True)
class CredentialService:
    """A service whose ``auth`` block an end-user fills through a credential form."""

    service: str
    display_name: str
    #: The grant the service really uses (client credentials, API key, OAuth 1.0a …).
    grant: str
    #: Auth-block paths the form fills (``client_access.client_id``, ``api_key`` …).
    auth_fields: tuple[str, ...]
    verification: Verification


@lru_cache(maxsize=1)
def credential_services() -> dict[str, CredentialService]:
    out: dict[str, CredentialService] = {}
    for service, raw in (_generated().get("credential_services") or {}).items():
        out[service] = CredentialService(
            service=service,
            display_name=str(raw["display_name"]),
            grant=str(raw["grant"]),
            auth_fields=tuple(raw["auth_fields"]),
            verification=Verification.model_validate(raw.get("verification") or {}),
        )
    return out
