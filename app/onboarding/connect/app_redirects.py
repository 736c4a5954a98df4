"""Native-app ``return_to`` targets (RFC 8252 §7.1, private-use URI scheme redirection).

A mobile or desktop app's backend may send the browser back to the app itself with a
private-use URI such as ``com.example.app:/connected``. Such a target is never trusted by
shape alone: it must be allow-listed explicitly (``api.allowed_app_redirects``), and both
the allow-list entries (at startup) and each ``return_to`` (at session creation) follow one
strict grammar:

* the scheme is lower-case reverse-domain notation with at least one dot
  (``com.example.app``), never a scheme browsers give meaning to (``javascript``,
  ``data``, ``http`` …) — the dot requirement already rules those out, the deny-list says so
  explicitly;
* then ``:/`` and a path — a single slash, so there is no authority, no userinfo, no host
  (``com.example.app://evil.com`` is refused);
* the path and the optional query use a small ASCII alphabet: no percent-encoding, no
  whitespace or control characters, no backslash, no dot segments, no fragment;
* the scheme matches an entry exactly (case-sensitive: ``COM.EXAMPLE.APP:`` is another
  value), and the path equals the entry's path, or starts with it when the entry ends in
  ``/`` (a path prefix). Wildcards do not exist.

This module has no dependencies so that settings validation (``app.config``) and
``return_to`` validation (:func:`app.onboarding.connect.origins.validate_return_to`, the
single validation point) share the grammar.
"""

from __future__ import annotations

import re

#: Longest accepted allow-list entry and ``return_to`` (a native URI is short).
MAX_ENTRY_LENGTH = 200
MAX_RETURN_TO_LENGTH = 1024

#: RFC 8252 §7.1 reverse-domain scheme: dot-separated DNS-like labels, lower case only.
_SCHEME = re.compile(r"[a-z][a-z0-9-]*(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")
#: Path: "/" then segments of unreserved characters (RFC 3986) — no "%", no sub-delims.
_PATH = re.compile(r"/(?:[A-Za-z0-9._~-]+/?)*")
#: Query (return_to only): name=value pairs of unreserved characters joined by "&".
_PAIR = r"[A-Za-z0-9._~-]+(?:=[A-Za-z0-9._~-]*)?"
_QUERY = re.compile(rf"{_PAIR}(?:&{_PAIR})*")

#: Schemes with a meaning in browsers or operating systems; never an app redirect.
DENIED_SCHEMES = frozenset(
    {
        "javascript",
        "vbscript",
        "data",
        "file",
        "http",
        "https",
        "ftp",
        "ws",
        "wss",
        "blob",
        "about",
        "filesystem",
        "intent",
        "mailto",
        "tel",
        "sms",
        "chrome",
        "view-source",
    }
)


def split_app_uri(value: str) -> tuple[str, str, str | None] | None:
    """``(scheme, path, query)`` when ``value`` is shaped like ``scheme:/path[?query]``.

    Returns ``None`` when the value has no scheme separator at all. The parts are not yet
    checked against the grammar (see :func:`app_uri_problem`).
    """
    scheme, sep, rest = value.partition(":")
    if not sep:
        return None
    path, qsep, query = rest.partition("?")
    return scheme, path, (query if qsep else None)


def _scheme_problem(scheme: str) -> str | None:
    if scheme.lower() in DENIED_SCHEMES:
        return f"scheme {scheme!r} is not a private-use scheme"
    if not _SCHEME.fullmatch(scheme):
        return "scheme must be lower-case reverse-domain notation with a dot (com.example.app)"
    return None


def _path_problem(path: str) -> str | None:
    if not path.startswith("/") or path.startswith("//"):
        return "must be 'scheme:/path' (one slash, no authority)"
    if not _PATH.fullmatch(path):
        return "path may only contain letters, digits, '-', '.', '_', '~' and '/'"
    if any(segment in {".", ".."} for segment in path.split("/")):
        return "path must not contain dot segments"
    return None


def app_redirect_entry_problem(entry: str) -> str | None:
    """Why an ``api.allowed_app_redirects`` entry is invalid, or ``None`` when it is valid."""
    if not isinstance(entry, str) or not entry:
        return "empty"
    if len(entry) > MAX_ENTRY_LENGTH:
        return f"longer than {MAX_ENTRY_LENGTH} characters"
    if "*" in entry:
        return "wildcards are not supported (list each scheme and path)"
    parts = split_app_uri(entry)
    if parts is None:
        return "must be 'scheme:/path'"
    scheme, path, query = parts
    if query is not None or "#" in path:
        return "must not contain a query or a fragment"
    return _scheme_problem(scheme) or _path_problem(path)


def app_uri_problem(value: str) -> str | None:
    """Why ``value`` is not a well-formed private-use ``return_to`` (allow-list aside)."""
    if len(value) > MAX_RETURN_TO_LENGTH:
        return f"longer than {MAX_RETURN_TO_LENGTH} characters"
    if not value.isascii():
        return "must be ASCII"
    if "#" in value:
        return "must not contain a fragment"
    parts = split_app_uri(value)
    if parts is None:
        return "must be an absolute URI"
    scheme, path, query = parts
    problem = _scheme_problem(scheme) or _path_problem(path)
    if problem is None and query is not None and not _QUERY.fullmatch(query):
        problem = "query may only hold name=value pairs of letters, digits, '-', '.', '_', '~'"
    return problem


def matches_app_redirect(value: str, allowed: list[str]) -> bool:
    """True when the well-formed ``value`` matches an allow-list entry exactly (scheme) and
    by path (equal, or under an entry ending in ``/``)."""
    parts = split_app_uri(value)
    if parts is None:
        return False
    scheme, path, _query = parts
    for entry in allowed:
        entry_parts = split_app_uri(entry)
        if entry_parts is None or entry_parts[0] != scheme:
            continue
        entry_path = entry_parts[1]
        if path == entry_path or (entry_path.endswith("/") and path.startswith(entry_path)):
            return True
    return False
