"""Generate ``app/providers/catalog_generated.yaml`` from ``oauth-catalog-facts.yaml``.

Run from the repository root::

    python -m app.providers.build_catalog /path/to/oauth-catalog-facts.yaml

The facts file holds one record per Fivetran service that accepts an API ``auth`` block (142).
This script turns them into data the service loads at startup:

* ``providers`` — one :class:`~app.providers.spec.ProviderSpec` entry per redirect-based
  (authorization code) service that the hand-written ``catalog.yaml`` does not define;
* ``credential_services`` — services whose auth block is not filled by a consent redirect
  (client credentials, JWT assertion, API keys, certificates, OAuth 1.0a tokens): their auth
  block is filled by a credential form (``/v1/sources`` route ``credentials``);
* ``verification`` — the verification status of every record's facts, also for the
  hand-written providers.

Free-text facts are normalised here (and only here): URL annotations in parentheses are
dropped, ``{placeholders}`` become validated end-user inputs, a few records whose URLs the
facts give only as prose are taken from :data:`CURATED`. Everything an operator may need to
change later is overridable per provider (``PBF_OAUTH__APPS__<KEY>__…``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from app.fivetran.index import FieldSpec, get_service
from app.providers.validation import RESERVED_AUTH_PARAMS as FLOW_AUTH_PARAMS

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "catalog_generated.yaml"
HAND = HERE / "catalog.yaml"

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
#: One DNS label, or a dotted suffix of labels (region "com.au").
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
HOST_PATTERN = rf"^{LABEL}(?:\.{LABEL})+$"
#: A path segment (tenant, company id …): no "/", "?", "#", "@" or ":".
SEGMENT_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
SUBDOMAIN_PATTERN = rf"^{LABEL}$"

AUTH_METHODS = {
    "basic": "client_secret_basic",
    "post": "client_secret_post",
    "basic+json": "client_secret_basic",
}
#: Authorization parameters the flow sets itself (plus the response type, always code).
RESERVED_AUTH_PARAMS = FLOW_AUTH_PARAMS | {"response_type"}
TOKEN_NAMES = ("access_token", "refresh_token", "user_access_token", "system_user_access_token")

#: Records whose URLs the facts give as prose, or whose placeholder sits where an arbitrary
#: value would move the token request to another host (top-level domain positions): fixed
#: templates and enumerated inputs.
CURATED: dict[str, dict[str, Any]] = {
    "amazon_ads": {
        "authorization_url": "https://{auth_host}/ap/oa",
        "token_url": "https://{token_host}/auth/o2/token",
        "enums": {
            "auth_host": ["www.amazon.com", "eu.account.amazon.com", "apac.account.amazon.com"],
            "token_host": ["api.amazon.com", "api.amazon.co.uk", "api.amazon.co.jp"],
        },
    },
    "exact_online": {
        "config": {"region": {"input": "region", "format": "https://start.exactonline.{value}"}},
        "authorization_url": "https://start.exactonline.{region}/api/oauth2/auth",
        "token_url": "https://start.exactonline.{region}/api/oauth2/token",
        "enums": {"region": ["nl", "be", "de", "fr", "es", "co.uk", "com"]},
    },
    "gainsight_customer_success": {
        # The facts name only the tenant host: the paths are placeholders (unknown).
        "authorization_url": "https://{sub_domain}.gainsightcloud.com/v1/oauth/authorize",
        "token_url": "https://{sub_domain}.gainsightcloud.com/v1/oauth/token",
        "unknown": ["authorization_url", "token_url"],
    },
    "amazon_attribution": {"enums": {"region_token_url": ["com", "co.uk", "co.jp"]}},
    "amazon_dsp": {"enums": {"token_url_region": ["com", "co.uk", "co.jp"]}},
    "amazon_selling_partner": {
        "host_suffixes": {"central_host": ["amazon.com", "amazon.co.uk", "amazon.co.jp"]}
    },
    "adobe_workfront": {"host_suffixes": {"hostname": ["workfront.com", "workfront.adobe.com"]}},
    "dialpad": {"enums": {"environment": ["dialpad", "sandbox.dialpad"]}},
    "ebay": {"enums": {"subdomain": ["ebay", "sandbox.ebay"]}},
    "oracle_netsuite_openair": {
        "enums": {
            "environment": ["netsuitesuiteprojectspro.com", "sandbox.netsuitesuiteprojectspro.com"]
        }
    },
    "pardot": {"host_suffixes": {"hostname": ["salesforce.com"]}},
    "pardot_sandbox": {"host_suffixes": {"hostname": ["salesforce.com"]}},
    "smartsheet": {"enums": {"domain": ["smartsheet.com", "smartsheet.eu", "smartsheet.au"]}},
    "tiktok_organic_app": {
        "enums": {"api_environment": ["business-api.tiktok.com", "sandbox-ads.tiktok.com"]}
    },
    "workday": {
        "host_suffixes": {
            "authorization_domain": ["workday.com", "myworkday.com"],
            "token_domain": ["workday.com", "myworkday.com"],
        }
    },
    "workday_financial_management": {
        "host_suffixes": {
            "authorization_domain": ["workday.com", "myworkday.com"],
            "token_domain": ["workday.com", "myworkday.com"],
        }
    },
    "workday_hcm": {
        "host_suffixes": {
            "authorization_domain": ["workday.com", "myworkday.com"],
            "token_domain": ["workday.com", "myworkday.com"],
        }
    },
    "google_play": {
        "authorization_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
    },
}
for _zoho in (
    "bigin_by_zoho_crm",
    "zoho_books",
    "zoho_campaigns",
    "zoho_crm",
    "zoho_desk",
    "zoho_inventory",
    "zoho_people",
    "zoho_recruit",
):
    CURATED[_zoho] = {
        "enums": {"region": ["com", "eu", "in", "com.au", "com.cn", "jp", "ca", "sa"]}
    }


def _clean_url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    url = value.split(" (", 1)[0].strip()
    return url if url.startswith("https://") and " " not in url else None


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _example(name: str, pattern: str, hint: str) -> str:
    if name.startswith("tenant"):
        return "common"
    for candidate in re.findall(r"[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]", hint):
        if candidate in ("e.g", "i.e") or re.fullmatch(pattern, candidate) is None:
            continue
        if pattern.endswith("$") and "\\." in pattern and "." not in candidate:
            continue
        return candidate
    return "acme"


def _inputs(
    record: dict[str, Any], urls: list[str], curated: dict[str, Any], free_hosts: list[str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(input specs, placeholder → Fivetran config field) for the URLs' placeholders.

    A placeholder that is the whole host is a host name (restricted to curated domain
    suffixes where known; else listed in ``free_hosts``); one that ends a host or sits
    before its last label (``accounts.zoho.{region}``, ``{environment}.com``) picks the
    registrable domain and must be an enumeration (the build fails otherwise): a free value
    there would send the client secret to any host.
    """
    enums: dict[str, list[str]] = curated.get("enums", {})
    suffixes: dict[str, list[str]] = curated.get("host_suffixes", {})
    service = record["fivetran_service"]
    hints: dict[str, str] = {}
    targets: dict[str, str] = {}
    for item in record.get("url_inputs") or []:
        for name in PLACEHOLDER.findall(str(item.get("placeholder", ""))):
            hints[name] = str(item.get("end_user_enters", ""))
            target = str(item.get("fivetran_config") or "").split(" ", 1)[0]
            if re.fullmatch(r"[a-z_][a-z0-9_]*", target):
                targets[name] = target
    names: list[str] = []
    for url in urls:
        for name in PLACEHOLDER.findall(url):
            if name not in names:
                names.append(name)
    specs: list[dict[str, Any]] = []
    for name in names:
        host = any(re.search(rf"https://\{{{name}\}}(?:/|$)", u) for u in urls)
        in_host = any(re.search(rf"https://[^/]*\{{{name}\}}", u) for u in urls) and not host
        enum = enums.get(name)
        picks_domain = in_host and any(
            re.search(rf"\{{{name}\}}(?:\.[a-z]+)?(?:/|$)", u) for u in urls
        )
        if picks_domain and enum is None:
            raise ValueError(f"{service}: {{{name}}} picks the registrable domain: curate an enum")
        pattern = HOST_PATTERN if host else SUBDOMAIN_PATTERN if in_host else SEGMENT_PATTERN
        if host and name in suffixes:
            alternatives = "|".join(re.escape(x) for x in suffixes[name])
            pattern = rf"^(?:{LABEL}\.)*(?:{alternatives})$"
        elif host and enum is None:
            free_hosts.append(name)
        spec: dict[str, Any] = {"name": name, "title": _title(name), "pattern": pattern}
        if hints.get(name):
            spec["description"] = hints[name]
        if enum is not None:
            spec["pattern"] = "^(?:" + "|".join(re.escape(v) for v in enum) + ")$"
            spec["enum"] = list(enum)
            spec["examples"] = [enum[0]]
        else:
            example = _example(name, pattern, hints.get(name, ""))
            if re.fullmatch(pattern, example) is None:
                example = f"acme.{suffixes[name][0]}" if name in suffixes else "acme.example.com"
            spec["examples"] = [example]
        specs.append(spec)
    return specs, targets


def _verification(
    record: dict[str, Any],
    unknown: list[str],
    free_hosts: list[str] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    unverified = [str(u) for u in record.get("unverified") or []]
    unverified += [f"inputs.{name} (any host: self-hosted installs)" for name in free_hosts]
    for fact, value in (
        ("pkce", record.get("pkce")),
        ("token_client_auth", record.get("token_client_auth")),
        ("refresh_token.rotates", (record.get("refresh_token") or {}).get("rotates")),
        ("refresh_token.issued", (record.get("refresh_token") or {}).get("issued")),
    ):
        if value == "unknown" and fact not in unverified:
            unverified.append(fact)
    method = str(record.get("token_client_auth"))
    if record.get("grant") == "authorization_code" and method not in ("basic", "post"):
        if not any(u.startswith("token_client_auth") for u in unverified):
            # basic+json, custom hashes …: the catalog approximates them (see the facts).
            sent = AUTH_METHODS.get(method, "client_secret_post")
            unverified.append(f"token_client_auth ({method}; catalog sends {sent})")
    out: dict[str, Any] = {
        "confidence": record.get("confidence", "inferred"),
        "sources": [str(s) for s in record.get("source") or []],
        "unverified": unverified,
    }
    if unknown:
        out["unknown"] = unknown
    return out


def _fivetran_mapping(
    record: dict[str, Any],
    config_fields: dict[str, FieldSpec],
    targets: dict[str, str],
    input_names: set[str],
) -> tuple[dict[str, Any], bool]:
    """(``fivetran:`` section, issues a refresh token?)"""
    fields = [str(f) for f in record.get("fivetran_auth_fields") or []]
    issued = (record.get("refresh_token") or {}).get("issued")
    wants_rt = "refresh_token" in fields and issued != "no"
    auth: list[str] = []
    extra: dict[str, Any] = {}
    if "client_access.client_id" in fields:
        auth.append("client_access")
    if wants_rt:
        auth.append("refresh_token")
    if "access_token" in fields:
        auth.append("access_token")
    for name in ("client_id", "client_secret"):
        if name in fields:
            extra[name] = {"credential": name}
    for name in ("user_access_token", "system_user_access_token"):
        if name in fields and "access_token" not in fields:
            extra[name] = {"token": "access_token"}
    if "ocapi_refresh_token" in fields:
        extra["ocapi_refresh_token"] = {"token": "refresh_token"}
        extra["ocapi_access_token"] = {"token": "access_token"}
        wants_rt = issued != "no"
    out: dict[str, Any] = {"auth": auth}
    if extra:
        out["auth_extra"] = extra
    config: dict[str, Any] = {}
    for placeholder, target in targets.items():
        if placeholder not in input_names:
            continue  # the end-user fills that config field in the form itself
        field = config_fields.get(target)
        if field is not None and field.type == "string" and not field.enum:
            config[target] = {"input": placeholder}
    if config:
        out["config"] = config
    return out, wants_rt


def provider_entry(record: dict[str, Any], service_fields: dict[str, FieldSpec]) -> dict[str, Any]:
    """One catalog entry (``ProviderSpec`` data) for an authorization-code record."""
    service = record["fivetran_service"]
    curated = CURATED.get(service, {})
    authorization_url = curated.get("authorization_url") or _clean_url(
        record.get("authorization_url")
    )
    token_url = curated.get("token_url") or _clean_url(record.get("token_url"))
    if authorization_url is None or token_url is None:
        raise ValueError(f"{service}: no usable authorization/token URL (add it to CURATED)")
    free_hosts: list[str] = []
    inputs, targets = _inputs(record, [authorization_url, token_url], curated, free_hosts)
    fivetran, wants_rt = _fivetran_mapping(
        record, service_fields, targets, {str(i["name"]) for i in inputs}
    )
    fivetran.setdefault("config", {}).update(curated.get("config", {}))
    if not fivetran["config"]:
        del fivetran["config"]
    renamed: list[str] = []
    for item in inputs:
        name = str(item["name"])
        if name in service_fields and name not in fivetran.get("config", {}):
            # The form has a config field of that name whose values differ (an enum of
            # region codes …): keep both, the input under its own name.
            item["name"] = f"oauth_{name}"
            renamed.append(name)
    if renamed:
        authorization_url, token_url = (
            re.sub(r"\{(" + "|".join(renamed) + r")\}", r"{oauth_\1}", u)
            for u in (authorization_url, token_url)
        )
    rotates = (record.get("refresh_token") or {}).get("rotates")
    parts = urlsplit(authorization_url)
    entry: dict[str, Any] = {
        "display_name": record.get("provider") or service,
        "fivetran_service": service,
        "issuer": f"{parts.scheme}://{parts.netloc}",
        "authorization_url": authorization_url,
        "token_url": token_url,
        "scopes": [str(s) for s in record.get("default_scopes") or []],
    }
    separator = record.get("scope_separator")
    if isinstance(separator, str) and separator and separator != " ":
        entry["scope_separator"] = separator
    params = {
        str(k): str(v)
        for k, v in (record.get("extra_authorization_params") or {}).items()
        if k not in RESERVED_AUTH_PARAMS and isinstance(v, str | int | bool)
    }
    if params:
        entry["extra_authorization_params"] = params
    entry["grant_types"] = (
        ["authorization_code", "refresh_token"] if wants_rt else ["authorization_code"]
    )
    entry["pkce"] = record.get("pkce") in ("on", "required")
    entry["token_auth_method"] = AUTH_METHODS.get(
        str(record.get("token_client_auth")), "client_secret_post"
    )
    # A refresh token is required when it is issued, or when the auth block has no other
    # token to carry (Fivetran could not use the connection without it).
    issued = (record.get("refresh_token") or {}).get("issued")
    token_fields = set(record.get("fivetran_auth_fields") or []) & set(TOKEN_NAMES)
    entry["requires_refresh_token"] = wants_rt and (
        issued == "yes" or token_fields <= {"refresh_token"}
    )
    entry["refresh_token_rotation"] = (
        "n/a" if not wants_rt else rotates if rotates in ("yes", "no", "optional") else "optional"
    )
    if parts.netloc == "accounts.google.com":
        # Revoking any Google token ends the whole authorization, the new tokens included.
        entry["revoke_replaced_refresh_token"] = False
    if params.get("access_type") == "offline":
        entry["sandbox"] = {"refresh_token_needs_offline": True}
    if inputs:
        entry["inputs"] = inputs
    entry["fivetran"] = fivetran
    entry["verification"] = _verification(record, list(curated.get("unknown", [])), free_hosts)
    return entry


def credential_entry(record: dict[str, Any], auth_tree: dict[str, FieldSpec]) -> dict[str, Any]:
    """A non-redirect service: which auth-block fields the credential form fills."""
    fields: list[str] = []
    for name, node in sorted(auth_tree.items()):
        props = node.properties
        if props:
            fields.extend(f"{name}.{sub}" for sub in sorted(props))
        else:
            fields.append(name)
    return {
        "display_name": record.get("provider") or record["fivetran_service"],
        "grant": str(record.get("grant")),
        "auth_fields": fields,
        "verification": _verification(record, []),
    }


def build(facts_path: Path) -> dict[str, Any]:
    records = yaml.safe_load(facts_path.read_text("utf-8"))
    hand = yaml.safe_load(HAND.read_text("utf-8")) or {}
    hand_services = {v["fivetran_service"] for v in hand.values()}
    providers: dict[str, Any] = {}
    credentials: dict[str, Any] = {}
    verification: dict[str, Any] = {}
    for record in records:
        service = record["fivetran_service"]
        verification[service] = _verification(
            record, list(CURATED.get(service, {}).get("unknown", []))
        )
        if service in hand_services:
            continue
        spec = get_service(service)
        if spec is None or spec.auth_tree is None:
            raise ValueError(f"{service}: not a Fivetran service with an auth block")
        if record.get("grant") == "authorization_code":
            providers[service] = provider_entry(record, spec.config_fields)
        else:
            credentials[service] = credential_entry(record, spec.auth_tree)
    _distinct_issuers(providers, hand)
    return {
        "providers": providers,
        "credential_services": credentials,
        "verification": verification,
    }


def _distinct_issuers(providers: dict[str, Any], hand: dict[str, Any]) -> None:
    """R10: one issuer per authorization server.

    The facts give no issuers; the authorization URL's origin stands in. Where that origin
    serves several endpoint sets (tenant paths, shared ``https://{hostname}``), the
    authorization endpoint itself (without query) becomes the issuer of each generated one.
    """
    servers: dict[str, set[tuple[str, str]]] = {}
    for entry in [*hand.values(), *providers.values()]:
        servers.setdefault(entry["issuer"], set()).add(
            (entry["authorization_url"], entry["token_url"])
        )
    for entry in providers.values():
        if len(servers[entry["issuer"]]) > 1:
            entry["issuer"] = entry["authorization_url"].split("?", 1)[0].rstrip("/")


HEADER = """\
# GENERATED by `python -m app.providers.build_catalog <oauth-catalog-facts.yaml>`: do not edit.
# Hand-written providers (catalog.yaml) win over generated ones of the same service.
"""


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = build(Path(argv[1]))
    text = yaml.safe_dump(data, sort_keys=True, allow_unicode=True, width=100)
    OUTPUT.write_text(HEADER + text, "utf-8")
    print(
        f"wrote {OUTPUT.name}: {len(data['providers'])} providers, "
        f"{len(data['credential_services'])} credential services"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
