"""RFC 8414 authorization-server metadata for operator-configured issuers.

When the operator configures a provider's issuer (an override of a catalog provider, or a
custom provider), the issuer's metadata is fetched on first use and cached
(:class:`MetadataCache`). What it says is enforced:

* ``issuer`` must equal the configured issuer exactly (RFC 8414 §3.3) — else no flow starts;
* ``authorization_response_iss_parameter_supported: true`` makes the RFC 9207 ``iss``
  parameter **required** in the callback (a callback without it is refused, R9);
* ``revocation_endpoint`` / ``introspection_endpoint`` fill endpoints the configuration
  leaves empty.

Metadata URLs are https only, except in sandbox mode or with
``PBF_OAUTH__ALLOW_INSECURE_LOOPBACK`` on loopback hosts. An issuer that publishes no
metadata (404) is remembered as such: the configuration alone then decides.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from app.errors import ServiceUnavailable, UpstreamError

if TYPE_CHECKING:
    from app.providers.registry import Provider

log = logging.getLogger("pbf.providers")
WELL_KNOWN = "/.well-known/oauth-authorization-server"
CACHE_SECONDS = 3600.0
_ENDPOINTS = (
    ("revocation_url", "revocation_endpoint"),
    ("introspection_url", "introspection_endpoint"),
)


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 (well-known suffix inserted before the path), then the appended form."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    urls = [urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + path, "", ""))]
    if path:
        urls.append(urlunsplit((parts.scheme, parts.netloc, path + WELL_KNOWN, "", "")))
    return urls


def _allowed(url: str, allow_http: bool) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (allow_http and parts.scheme == "http")


class MetadataCache:
    """Issuer → metadata (``None``: the issuer publishes none), kept for ``ttl`` seconds."""

    def __init__(self, *, allow_http: bool, ttl: float = CACHE_SECONDS) -> None:
        self.allow_http = allow_http
        self.ttl = ttl
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def get(
        self, http: httpx.AsyncClient, issuer: str, provider_key: str
    ) -> dict[str, Any] | None:
        hit = self._entries.get(issuer)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        metadata = await self._fetch(http, issuer, provider_key)
        self._entries[issuer] = (time.monotonic() + self.ttl, metadata)
        return metadata

    async def _fetch(
        self, http: httpx.AsyncClient, issuer: str, provider_key: str
    ) -> dict[str, Any] | None:
        if not _allowed(issuer, self.allow_http):
            raise UpstreamError(
                f"{provider_key}: metadata of issuer {issuer!r} must be fetched over https",
                code="provider_metadata_invalid",
            )
        for url in metadata_urls(issuer):
            try:
                response = await http.get(
                    url,
                    headers={"Accept": "application/json"},
                    extensions={"pbf_target": f"oauth:{provider_key}"},
                )
            except httpx.HTTPError:
                raise ServiceUnavailable(
                    f"{provider_key}: the authorization server metadata cannot be fetched",
                    code="provider_metadata_unavailable",
                ) from None
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                raise ServiceUnavailable(
                    f"{provider_key}: the authorization server metadata answered "
                    f"HTTP {response.status_code}",
                    code="provider_metadata_unavailable",
                )
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise UpstreamError(
                    f"{provider_key}: the authorization server metadata is not a JSON object",
                    code="provider_metadata_invalid",
                )
            if body.get("issuer") != issuer:
                # RFC 8414 §3.3: metadata of another issuer must not be used.
                raise UpstreamError(
                    f"{provider_key}: the metadata names issuer {body.get('issuer')!r}, "
                    f"not the configured {issuer!r}",
                    code="provider_metadata_invalid",
                )
            return body
        log.info("issuer publishes no metadata", extra={"provider": provider_key})
        return None

    async def apply(self, provider: Provider, http: httpx.AsyncClient) -> Provider:
        """``provider`` with what its issuer's metadata says (unchanged without discovery)."""
        spec = provider.spec
        if not spec.discover_metadata or "{" in spec.issuer:
            return provider
        metadata = await self.get(http, spec.issuer, provider.key)
        if metadata is None:
            return provider
        update: dict[str, Any] = {}
        if metadata.get("authorization_response_iss_parameter_supported") is True:
            update["authorization_response_iss"] = True
        for field, key in _ENDPOINTS:
            value = metadata.get(key)
            if getattr(spec, field) is None and isinstance(value, str):
                if _allowed(value, self.allow_http):
                    update[field] = value
        if not update:
            return provider
        return dataclasses.replace(provider, spec=spec.model_copy(update=update))
