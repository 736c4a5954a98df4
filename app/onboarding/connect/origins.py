"""Origins we trust: ``return_to`` validation (R22) and the ``Origin`` check of the start POST.

``return_to`` is validated exactly once, when the connect session is created, and only the
stored value is ever redirected to. The rules are strict on purpose: parse with
``urlsplit``; ``https`` only (``http`` on loopback in sandbox mode); the origin (scheme,
lower-cased IDNA host, port) must equal an allow-listed origin; no userinfo, no backslash,
no whitespace or control character, nothing percent-encoded in the authority, no
protocol-relative or scheme-less value.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.config import Settings
from app.errors import InvalidInput
from app.onboarding.connect.app_redirects import (
    app_uri_problem,
    matches_app_redirect,
    split_app_uri,
)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_DEFAULT_PORTS = {"https": 443, "http": 80}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int

    def serialize(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}"


class UnsafeUrl(ValueError):
    """The value is not an absolute URL we can trust (reason in the message)."""


def _has_forbidden_chars(value: str) -> bool:
    for ch in value:
        if ch == "\\" or ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F:
            return True
        if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Zs"}:
            return True
    return False


def _idna_host(host: str) -> str:
    host = host.lower()
    if host.startswith("["):
        return host
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
        # Python's IDNA 2003 rewrites some characters (ß → ss, ς → σ, full-width forms) that
        # browsers (UTS #46) keep or map otherwise: accept a non-ASCII host only when it
        # round-trips, so the origin checked is the one the browser will go to.
        if not host.isascii() and ascii_host.encode("ascii").decode("idna") != host:
            raise UnsafeUrl("host is not a canonical internationalized domain name")
    except UnicodeError as exc:
        raise UnsafeUrl("host is not a valid domain name") from exc
    return ascii_host


def parse_origin(url: str) -> tuple[Origin, str]:
    """Parse an absolute http(s) URL into its origin; raise :class:`UnsafeUrl` if unsafe.

    Returns the origin and the URL as given (validated, unchanged).
    """
    if not isinstance(url, str) or not url:
        raise UnsafeUrl("empty")
    if len(url) > 2048:
        raise UnsafeUrl("too long")
    if _has_forbidden_chars(url):
        raise UnsafeUrl("contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. NFKC-normalised '/' or '#' in the authority, bad IPv6
        raise UnsafeUrl("is not a valid URL") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeUrl("must be an absolute https URL")
    # 'https:evil.com' and 'https:/evil.com' parse with an empty or shifted authority.
    if not url[len(parts.scheme) :].startswith("://") or not parts.netloc:
        raise UnsafeUrl("must be an absolute https URL")
    if "@" in parts.netloc:
        raise UnsafeUrl("must not contain userinfo")
    if "%" in parts.netloc:
        raise UnsafeUrl("must not percent-encode its authority")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("has an invalid port") from exc
    bracketed = f"[{host}]" if ":" in host else host
    return Origin(scheme, _idna_host(bracketed), port or _DEFAULT_PORTS[scheme]), url


def _is_loopback(origin: Origin) -> bool:
    return origin.host in LOOPBACK_HOSTS


def configured_origins(settings: Settings) -> set[Origin]:
    """The allow-list: ``api.allowed_origins`` plus our own public origin."""
    out: set[Origin] = set()
    for entry in [*settings.api.allowed_origins, settings.public_base_url]:
        try:
            out.add(parse_origin(entry)[0])
        except UnsafeUrl:
            continue
    return out


def is_allowed_origin(settings: Settings, origin: Origin) -> bool:
    if origin in configured_origins(settings):
        return origin.scheme == "https" or settings.is_sandbox or _is_loopback(origin)
    # Sandbox mode: any loopback origin (http or https, any port) is allowed.
    return settings.is_sandbox and _is_loopback(origin)


def _is_app_redirect_attempt(settings: Settings, value: str) -> bool:
    """A value not claiming http(s) while native-app redirects are configured."""
    if not settings.api.allowed_app_redirects or not isinstance(value, str):
        return False
    parts = split_app_uri(value)
    return parts is not None and parts[0].strip().lower() not in _DEFAULT_PORTS


def _validate_app_redirect(settings: Settings, value: str) -> str:
    problem = app_uri_problem(value)
    if problem is None and _has_forbidden_chars(value):
        problem = "contains whitespace, control characters or a backslash"
    if problem is not None:
        raise InvalidInput(
            f"return_to is not allowed: {problem}", code="invalid_return_to", field="return_to"
        )
    if not matches_app_redirect(value, settings.api.allowed_app_redirects):
        raise InvalidInput(
            "return_to is not an allow-listed app redirect (PBF_API__ALLOWED_APP_REDIRECTS)",
            code="invalid_return_to",
            field="return_to",
        )
    return value


def validate_return_to(settings: Settings, value: str) -> str:
    """R22: the value itself if safe, else ``InvalidInput`` naming ``return_to``.

    An allow-listed origin's https URL (loopback http in sandbox mode), or — when configured
    — an allow-listed native-app redirect (RFC 8252 private-use scheme).
    """
    if _is_app_redirect_attempt(settings, value):
        return _validate_app_redirect(settings, value)
    try:
        origin, url = parse_origin(value)
    except UnsafeUrl as exc:
        raise InvalidInput(
            f"return_to is not allowed: {exc}", code="invalid_return_to", field="return_to"
        ) from None
    if origin.scheme != "https" and not (settings.is_sandbox and _is_loopback(origin)):
        raise InvalidInput("return_to must use https", code="invalid_return_to", field="return_to")
    if not is_allowed_origin(settings, origin):
        raise InvalidInput(
            "return_to's origin is not in the allow-list (PBF_API__ALLOWED_ORIGINS)",
            code="invalid_return_to",
            field="return_to",
        )
    return url


def check_request_origin(
    settings: Settings, header: str | None, sec_fetch_site: str | None = None
) -> bool:
    """True when a browser POST comes from an allow-listed origin (login-CSRF defence, R4).

    Two browser-set signals are accepted, both forbidden headers a page cannot forge:

    * ``Origin`` naming an allow-listed origin (the company's page POSTing to us);
    * ``Sec-Fetch-Site: same-origin`` when ``Origin`` is absent or ``null`` — our own
      confirmation page's form. A page under a ``no-referrer`` policy makes Chromium send
      ``Origin: null`` even to its own origin (Fetch, "serializing a request origin"), so
      ``null`` alone proves nothing either way; ``Sec-Fetch-Site`` is computed over the
      whole redirect chain and says ``cross-site``/``same-site`` for anything not ours.

    A request that says ``Sec-Fetch-Site: cross-site`` or ``same-site`` still needs an
    allow-listed ``Origin``; a missing or opaque origin without ``same-origin`` is refused.
    """
    if header and header != "null":
        try:
            origin, _ = parse_origin(header)
        except UnsafeUrl:
            return False
        if urlsplit(header).path not in ("", "/"):
            return False
        return is_allowed_origin(settings, origin)
    return (sec_fetch_site or "").strip().lower() == "same-origin"


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` added to its query (existing keys of the same name replaced)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    query.extend(params.items())
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
