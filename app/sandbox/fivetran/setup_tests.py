"""Setup tests of the Fivetran simulator (simulation).

* Services with an ``auth`` block (OAuth sources): "Validate Login" introspects the handed-over
  ``refresh_token`` (else ``access_token``) at the sandbox OAuth server through a
  :data:`TokenChecker`; an inactive, revoked or unknown token fails the test. An OAuth 1.0a
  block (``consumer_key``/``consumer_secret``/``oauth_token``/``oauth_token_secret``: X) is
  checked with a signed request at the sandbox OAuth 1.0a server.
* Credential sources (no ``auth`` block) fail on what a user would expect to fail (the
  documented sandbox rules, see the README):

  - "Host Connection" (only when the config has a ``host`` or ``port``): a host that cannot
    resolve — ``invalid``, ``*.invalid`` (RFC 2606), empty or with characters no host name
    has — or a port outside 1..65535 fails it; "Validate Credentials" is then ``SKIPPED``.
  - "Validate Credentials": fails when the service takes secret credentials (``password``,
    ``api_key``…) and none is given, when ``password`` is the marker ``wrong``, or when any
    config value is the literal string ``invalid``; the message names the field.
* Connections authorized in the simulated Connect Card: "Validate Login" passes unless the
  card's sign-in account or a config value is ``invalid``
  (:func:`app.sandbox.fivetran.connect_card.card_setup_test`).
* SSH tunnels (``networking_method: SshTunnel`` or a ``config.tunnel_host``): an "SSH Tunnel"
  test first fails with the host's fingerprint in ``details`` (``{"hash", "public_key"}``)
  until that fingerprint is approved (``POST …/fingerprints``) or ``trust_fingerprints`` is
  true (which approves it). Later tests are then ``SKIPPED``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from app.fivetran.index import get_service
from app.sandbox.fivetran.connect_card import card_setup_test
from app.sandbox.fivetran.state import SimState, now_iso, ssh_fingerprint, ssh_rsa_public_key

# (service, token) -> active? (None: the token could not be checked). For an OAuth 1.0a auth
# block (X / Twitter) the token is the block's four values (consumer_key, consumer_secret,
# oauth_token, oauth_token_secret), checked with a signed request.
TokenChecker = Callable[[str, "str | Mapping[str, str]"], Awaitable[bool | None]]
OAUTH1_FIELDS = ("consumer_key", "consumer_secret", "oauth_token", "oauth_token_secret")
INVALID = "invalid"
#: Auth-block fields that carry an OAuth token, in the order the setup test checks them.
TOKEN_FIELDS = (
    "refresh_token",
    "access_token",
    "user_access_token",
    "system_user_access_token",
    "ocapi_refresh_token",
    "ocapi_access_token",
)
WRONG_PASSWORD = "wrong"
_HOST_RE = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$"
)


def _find_invalid(value: Any, path: str) -> str | None:
    if isinstance(value, str) and value == INVALID:
        return path
    if isinstance(value, dict):
        for k, v in value.items():
            hit = _find_invalid(v, f"{path}.{k}")
            if hit:
                return hit
    if isinstance(value, list):
        for i, v in enumerate(value):
            hit = _find_invalid(v, f"{path}[{i}]")
            if hit:
                return hit
    return None


def _test(title: str, status: str, message: str = "", details: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"title": title, "status": status, "message": message}
    if details is not None:
        out["details"] = details
    return out


def uses_ssh_tunnel(connection: dict[str, Any]) -> bool:
    cfg = connection.get("config") or {}
    return (
        connection.get("networking_method") == "SshTunnel"
        or cfg.get("connection_type") == "SshTunnel"
        or bool(cfg.get("tunnel_host"))
    )


async def run_setup_tests(
    state: SimState,
    connection: dict[str, Any],
    *,
    checker: TokenChecker,
    trust_fingerprints: bool = False,
    trust_certificates: bool = False,
) -> list[dict[str, Any]]:
    """Run the tests for ``connection`` (mutating fingerprints when trusted); returns them."""
    tests: list[dict[str, Any]] = []
    conn_id = connection["id"]
    cfg = connection.get("config") or {}
    if uses_ssh_tunnel(connection):
        host = str(cfg.get("tunnel_host") or cfg.get("host") or "tunnel")
        public_key = ssh_rsa_public_key(f"tunnel:{host}")
        fp = ssh_fingerprint(public_key)
        approved = state.fingerprints.setdefault(conn_id, {})
        if trust_fingerprints and fp not in approved:
            approved[fp] = {
                "id": fp,
                "hash": fp,
                "public_key": public_key,
                "validated_by": "sandbox_user",
                "validated_date": now_iso(),
            }
        if fp in approved:
            tests.append(_test("SSH Tunnel", "PASSED"))
        else:
            tests.append(
                _test(
                    "SSH Tunnel",
                    "FAILED",
                    f"The SSH fingerprint of {host} is not trusted: approve it "
                    "(POST /v1/connections/{id}/fingerprints) or retry with "
                    "trust_fingerprints=true.",
                    {"hash": fp, "public_key": public_key},
                )
            )
            tests.append(_test("Validate Credentials", "SKIPPED", "Skipped: SSH Tunnel failed"))
            return tests

    card = card_setup_test(connection)
    if card is not None:  # authorized in the (simulated) Connect Card
        tests.append(card)
        return tests

    spec = get_service(connection["service"])
    auth = state.auth.get(conn_id)
    if spec is not None and spec.auth_tree is not None and (auth or not _has_secret(cfg, spec)):
        token = next(
            (auth[n] for n in TOKEN_FIELDS if auth and isinstance(auth.get(n), str) and auth[n]),
            None,
        )
        if token is None and not auth:
            tests.append(
                _test(
                    "Validate Login",
                    "FAILED",
                    "Not authorized: hand over the OAuth tokens in the auth block "
                    "(or authorize in the dashboard).",
                )
            )
            return tests
        if (
            token is None
            and auth
            and all(isinstance(auth.get(n), str) and auth[n] for n in OAUTH1_FIELDS)
        ):
            oauth1 = {n: str(auth[n]) for n in OAUTH1_FIELDS}
            tests.append(await _validate_login(checker, connection["service"], oauth1))
            return tests
        if token is not None:
            tests.append(await _validate_login(checker, connection["service"], token))
            return tests
        # An auth block without a token (API key, client credentials, certificate) is
        # checked like credentials.
        bad = _find_invalid(auth, "auth")
        if bad:
            tests.append(
                _test("Validate Credentials", "FAILED", f"Invalid credentials: check '{bad}'.")
            )
            return tests

    if "host" in cfg or "port" in cfg:
        problem = host_problem(cfg)
        if problem:
            tests.append(_test("Host Connection", "FAILED", problem))
            tests.append(
                _test("Validate Credentials", "SKIPPED", "Skipped: Host Connection failed")
            )
            return tests
        tests.append(_test("Host Connection", "PASSED"))
    problem = credentials_problem(cfg, spec, auth_block=bool(auth))
    if problem:
        tests.append(_test("Validate Credentials", "FAILED", problem))
    else:
        tests.append(_test("Validate Credentials", "PASSED"))
    return tests


async def _validate_login(
    checker: TokenChecker, service: str, token: str | Mapping[str, str]
) -> dict[str, Any]:
    try:
        active = await checker(service, token)
    except Exception as exc:
        return _test(
            "Validate Login",
            "FAILED",
            f"Could not verify the token at the authorization server ({type(exc).__name__}).",
        )
    if active is None:
        return _test(
            "Validate Login",
            "PASSED",
            "The token was not checked: it was not issued by the sandbox authorization server "
            "and its provider has no introspection endpoint.",
        )
    if active:
        return _test("Validate Login", "PASSED")
    return _test(
        "Validate Login",
        "FAILED",
        "Invalid credentials: the token is expired, revoked or unknown. "
        "Re-authorize the connection.",
    )


def host_problem(cfg: dict[str, Any]) -> str | None:
    """Why the sandbox cannot "reach" ``cfg``'s host/port, or None."""
    if "host" in cfg:
        host = cfg["host"]
        if not isinstance(host, str) or not host.strip():
            return "Could not connect: the host is empty."
        name = host.strip().rstrip(".").lower()
        if name == INVALID or name.endswith("." + INVALID) or not _resolvable(name):
            return f"Could not resolve host '{host}': Name or service not known."
    if "port" in cfg:
        port = cfg["port"]
        try:
            number = int(port)
        except (TypeError, ValueError):
            number = -1
        if isinstance(port, bool) or not 1 <= number <= 65535:
            return f"Invalid port {port!r}: a port is a number between 1 and 65535."
    return None


def _resolvable(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return bool(_HOST_RE.match(name)) and len(name) <= 253


def credentials_problem(cfg: dict[str, Any], spec: Any, *, auth_block: bool = False) -> str | None:
    """Why "Validate Credentials" fails for ``cfg``, or None (with an ``auth_block``, that
    block holds the credentials: no config secret is then missing)."""
    bad = _find_invalid(cfg, "config")
    if bad:
        return f"Invalid credentials: check the value of '{bad}'."
    if cfg.get("password") == WRONG_PASSWORD:
        return (
            "Invalid credentials: password authentication failed for user "
            f"'{cfg.get('user', '')}' (check 'config.password')."
        )
    secret_fields = sorted(
        k for k, f in (spec.config_fields.items() if spec is not None else ()) if f.secret
    )
    if secret_fields and not auth_block and not any(cfg.get(k) for k in secret_fields):
        names = ", ".join(f"'config.{k}'" for k in secret_fields)
        which = names if len(secret_fields) == 1 else f"one of {names}"
        return f"Missing credentials: provide {which}."
    return None


def _has_secret(cfg: dict[str, Any], spec: Any) -> bool:
    return any(
        spec.config_fields.get(k) is not None and spec.config_fields[k].secret and v
        for k, v in cfg.items()
    )


def passed(tests: list[dict[str, Any]]) -> bool:
    return all(t["status"] in ("PASSED", "SKIPPED", "WARNING") for t in tests) and any(
        t["status"] == "PASSED" for t in tests
    )
