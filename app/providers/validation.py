"""Startup validation of the provider catalog and operator configuration.

Every check reports one human message naming the provider and the field; the caller collects
them all and refuses to start (:class:`~app.providers.errors.ProviderConfigError`). Checks:

* endpoints are ``https`` (``http`` only on a loopback host, and only in sandbox mode or with
  ``PBF_OAUTH__ALLOW_INSECURE_LOOPBACK``) and carry no fragment (RFC 9700 §2.6, R14);
* issuers are unique: two providers may share an issuer only when they are the same
  authorization server (same authorization and token endpoints) (RFC 9207 §4, R10);
* only the authorization code grant with a query response: no ``response_type=token``,
  no password grant, no ``response_mode=fragment``/``form_post`` (RFC 9700 §2.1.2/§2.4, R23);
* input patterns compile and are anchored; defaults and enum values match them;
* URL placeholders are inputs (or provided by a named hook); hooks exist;
* the Fivetran service exists (when the service index is available).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from app.fivetran.index import get_service
from app.providers.hooks import get_hook
from app.providers.registry import PLACEHOLDER
from app.providers.spec import ProviderSpec

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}\Z")
ALLOWED_GRANTS = {"authorization_code", "refresh_token", "fb_exchange_token"}
FORBIDDEN_GRANTS = {
    "implicit": "the implicit grant",
    "token": "the implicit grant",
    "password": "the resource owner password grant",
}
RESERVED_TOKEN_PARAMS = {
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "username",
    "password",
}
RESERVED_AUTH_PARAMS = {
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(where: str, url: str, *, allow_loopback_http: bool, problems: list[str]) -> None:
    """https only; http solely on loopback when allowed; no fragment, no userinfo."""
    try:
        parts = urlsplit(url.replace("{", "x").replace("}", "x"))
    except ValueError:
        problems.append(f"{where}: {url!r} is not a valid URL")
        return
    if parts.scheme == "https" and parts.hostname:
        pass
    elif parts.scheme == "http" and _is_loopback(parts.hostname):
        if not allow_loopback_http:
            problems.append(
                f"{where}: {url!r} uses http://; only https is allowed (http on a loopback "
                "host needs sandbox mode or PBF_OAUTH__ALLOW_INSECURE_LOOPBACK)"
            )
    else:
        problems.append(f"{where}: {url!r} must be an https:// URL")
        return
    if parts.fragment:
        problems.append(f"{where}: {url!r} must not contain a fragment")
    if parts.username or parts.password:
        problems.append(f"{where}: {url!r} must not contain user info")


def check_spec(
    key: str,
    spec: ProviderSpec,
    *,
    allow_loopback_http: bool,
    known_services: set[str] | None,
    check_urls: bool = True,
) -> list[str]:
    """Every problem of one provider definition (``check_urls=False``: our own sandbox)."""
    problems: list[str] = []
    where = f"provider {key!r}"
    if not KEY_PATTERN.match(key):
        problems.append(f"{where}: key must match {KEY_PATTERN.pattern}")

    # R23: authorization code grant only, query response mode only.
    if spec.response_type != "code":
        problems.append(
            f"{where}: response_type {spec.response_type!r} is not allowed; only 'code' "
            "(no implicit or hybrid flows, RFC 9700 §2.1.2)"
        )
    if spec.response_mode not in (None, "query"):
        problems.append(
            f"{where}: response_mode {spec.response_mode!r} is not allowed; only 'query' "
            "(fragment leaks codes to the browser; form_post breaks the SameSite=Lax binding)"
        )
    for grant in spec.grant_types:
        if grant in FORBIDDEN_GRANTS:
            problems.append(
                f"{where}: grant_types contains {grant!r} ({FORBIDDEN_GRANTS[grant]} is not "
                "allowed, RFC 9700 §2.1.2/§2.4)"
            )
        elif grant not in ALLOWED_GRANTS:
            problems.append(f"{where}: grant_types contains unknown grant {grant!r}")
    if "authorization_code" not in spec.grant_types:
        problems.append(f"{where}: grant_types must include 'authorization_code'")
    for name, value in spec.extra_authorization_params.items():
        if name == "response_type" and value != "code":
            problems.append(
                f"{where}: extra_authorization_params.response_type={value!r} is not allowed "
                "(implicit/hybrid flow)"
            )
        elif name == "response_mode" and value != "query":
            problems.append(
                f"{where}: extra_authorization_params.response_mode={value!r} is not allowed"
            )
        elif name in RESERVED_AUTH_PARAMS:
            problems.append(
                f"{where}: extra_authorization_params must not set {name!r} (set by the flow)"
            )

    for name in spec.extra_token_params:
        if name in RESERVED_TOKEN_PARAMS:
            problems.append(
                f"{where}: extra_token_params must not set {name!r} (set by the token client)"
            )

    # Hooks and placeholders.
    provided: set[str] = set()
    for hook_name in spec.hooks:
        hook = get_hook(hook_name)
        if hook is None:
            problems.append(f"{where}: unknown hook {hook_name!r}")
        else:
            provided |= hook.provides
    input_names = {i.name for i in spec.inputs}
    if len(input_names) != len(spec.inputs):
        problems.append(f"{where}: input names must be unique")
    for field_name in (
        "issuer",
        "authorization_url",
        "token_url",
        "revocation_url",
        "introspection_url",
    ):
        url = getattr(spec, field_name)
        if url is None:
            continue
        for placeholder in PLACEHOLDER.findall(url):
            if placeholder not in input_names and placeholder not in provided:
                problems.append(
                    f"{where}: {field_name} uses {{{placeholder}}}, which is not an input"
                )
        if check_urls:
            check_url(
                f"{where}: {field_name}",
                url,
                allow_loopback_http=allow_loopback_http,
                problems=problems,
            )

    # Inputs: anchored, compiling patterns; defaults and enums that match.
    for item in spec.inputs:
        iwhere = f"{where}: input {item.name!r}"
        if not (item.pattern.startswith("^") and item.pattern.endswith("$")):
            problems.append(f"{iwhere}: pattern must be anchored with ^ and $")
        try:
            compiled = re.compile(item.pattern)
        except re.error as exc:
            problems.append(f"{iwhere}: pattern does not compile ({exc})")
            continue
        candidates = ([item.default] if item.default is not None else []) + list(item.enum or [])
        for value in candidates:
            if compiled.fullmatch(value) is None:
                problems.append(f"{iwhere}: value {value!r} does not match its pattern")

    # Token endpoint client authentication.
    if spec.token_auth_method == "json_body" and not spec.json_body_fields:
        problems.append(f"{where}: json_body needs json_body_fields")
    if not spec.scope_separator:
        problems.append(f"{where}: scope_separator must not be empty")
    for scope in spec.required_scopes or []:
        if scope not in spec.scopes:
            problems.append(f"{where}: required scope {scope!r} is not in scopes")

    # Fivetran mapping.
    if known_services is not None and spec.fivetran_service not in known_services:
        problems.append(
            f"{where}: unknown Fivetran service {spec.fivetran_service!r} "
            "(not in the Fivetran service index)"
        )
    sources = list(spec.fivetran.auth_extra.items()) + list(spec.fivetran.config.items())
    for target, source in sources:
        if source.input is not None and source.input not in input_names:
            problems.append(
                f"{where}: fivetran mapping {target!r} reads unknown input {source.input!r}"
            )
    if spec.picker is not None:
        problems.extend(
            _picker_problems(where, spec, check_urls=check_urls, allow_loopback=allow_loopback_http)
        )
    return problems


def _picker_problems(
    where: str, spec: ProviderSpec, *, check_urls: bool, allow_loopback: bool
) -> list[str]:
    """Post-consent configuration: https list URLs, compiling anchored value patterns, field
    names that are Fivetran config fields of the service, unique field names."""
    assert spec.picker is not None
    problems: list[str] = []
    service = get_service(spec.fivetran_service)
    known = set(service.config_fields) if service is not None else set()
    names = [f.name for f in spec.picker.fields]
    if len(set(names)) != len(names):
        problems.append(f"{where}: picker field names must be unique")
    for name in names + list(spec.picker.config):
        if known and name not in known:
            problems.append(
                f"{where}: picker field {name!r} is not a config field of "
                f"{spec.fivetran_service!r} in Fivetran's definition"
            )
    for item in spec.picker.fields:
        request = item.request
        fwhere = f"{where}: picker field {item.name!r}"
        if check_urls:
            check_url(
                f"{fwhere} url", request.url, allow_loopback_http=allow_loopback, problems=problems
            )
        if request.value_pattern is not None:
            pattern = request.value_pattern
            if not (pattern.startswith("^") and pattern.endswith("$")):
                problems.append(f"{fwhere}: value_pattern must be anchored with ^ and $")
            try:
                if re.compile(pattern).groups != 1:
                    problems.append(f"{fwhere}: value_pattern must have exactly one group")
            except re.error as exc:
                problems.append(f"{fwhere}: value_pattern does not compile ({exc})")
        if (request.next_token is None) != (request.next_token_param is None):
            problems.append(f"{fwhere}: next_token and next_token_param go together")
    return problems


def check_issuers(specs: Mapping[str, ProviderSpec]) -> list[str]:
    """R10: an issuer identifies one authorization server; no two different ASes share one."""
    problems: list[str] = []
    seen: dict[str, tuple[str, str, str]] = {}
    for key, spec in specs.items():
        server = (spec.authorization_url, spec.token_url)
        previous = seen.get(spec.issuer)
        if previous is None:
            seen[spec.issuer] = (key, *server)
            continue
        other_key, other_auth, other_token = previous
        if (other_auth, other_token) != server:
            problems.append(
                f"provider {key!r}: issuer {spec.issuer!r} is already used by provider "
                f"{other_key!r} with different endpoints; issuers must be unique per "
                "authorization server (RFC 9207 §4, mix-up defence)"
            )
    return problems
