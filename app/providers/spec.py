"""The data schema of one provider: used by ``catalog.yaml`` and by operator-defined providers.

A provider is described as data (:class:`ProviderSpec`); the few quirks data cannot express
are named hooks (``hooks:``) implemented in :mod:`app.providers.hooks`. Semantic checks that
need the whole catalog (unique issuers, https-only, no implicit/password grant, known
Fivetran service) live in :mod:`app.providers.validation` and report one message per problem.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "raw_basic", "json_body"]
Rotation = Literal["yes", "no", "optional", "n/a"]
AuthValue = Literal["client_access", "refresh_token", "access_token"]
DEFAULT_AUTH: tuple[AuthValue, ...] = ("client_access", "refresh_token")


class InputSpec(BaseModel):
    """One value the end-user enters (subdomain, shop, My Domain host, region …)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    title: str
    description: str | None = None
    #: Anchored regular expression the value must match (``^…$``), checked before use.
    pattern: str
    default: str | None = None
    required: bool = True
    enum: list[str] | None = None
    max_length: int = Field(253, ge=1, le=2048)
    examples: list[str] = Field(default_factory=list)


class ValueSource(BaseModel):
    """Where one Fivetran field's value comes from; exactly one key is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str | None = None
    metadata: str | None = None
    app: str | None = None
    const: str | None = None
    #: The OAuth app's own ``client_id`` / ``client_secret`` (top-level auth fields).
    credential: Literal["client_id", "client_secret"] | None = None
    #: A token of the result under another name (e.g. ``ocapi_refresh_token``).
    token: Literal["access_token", "refresh_token"] | None = None
    #: Python format string applied to the value (``{value}``), e.g. ``https://{value}``.
    format: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueSource:
        keys = ("input", "metadata", "app", "const", "credential", "token")
        chosen = [k for k in keys if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of " + ", ".join(keys))
        return self


class FivetranMapping(BaseModel):
    """How a token result maps onto the Fivetran create-connection ``auth``/``config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: list[AuthValue] = Field(default_factory=lambda: list(DEFAULT_AUTH))
    #: Additional ``auth`` targets (dotted, e.g. ``realm_id``, ``client_access.developer_token``).
    auth_extra: dict[str, ValueSource] = Field(default_factory=dict)
    config: dict[str, ValueSource] = Field(default_factory=dict)

    @property
    def hands_over_token(self) -> bool:
        """Whether an OAuth token reaches the auth block (else: Connect Card only)."""
        if "access_token" in self.auth or "refresh_token" in self.auth:
            return True
        return any(source.token is not None for source in self.auth_extra.values())


FactStatus = Literal["verified", "unverified", "unknown"]


class Verification(BaseModel):
    """How far a provider's facts are established (from ``oauth-catalog-facts.yaml``).

    ``verified`` means every fact rests on the cited sources (open-source integration code or
    vendor documentation); it never means "exercised against the live provider". Facts named
    in ``unverified`` rest on general knowledge; ``unknown`` facts are placeholders that an
    operator must override before a real app can be configured (startup says so).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Where the endpoints come from: nango | airbyte | docs | inferred | curated.
    confidence: str = "curated"
    sources: list[str] = Field(default_factory=list)
    unverified: list[str] = Field(default_factory=list)
    #: Provider fields whose catalog value is a guess (operator override required).
    unknown: list[str] = Field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.unverified and not self.unknown and self.confidence != "inferred"

    def public(self) -> dict[str, Any]:
        """The public view (``/v1/sources``, ``providers list``)."""
        out: dict[str, Any] = {"verified": self.verified}
        if not self.verified:
            out["unverified_facts"] = list(self.unverified) + [
                f"{name} (unknown)" for name in self.unknown
            ]
        out["facts_confidence"] = self.confidence
        return out


class PickerRequest(BaseModel):
    """One provider list call (the account / property / site list after consent).

    ``url`` is the provider's real list endpoint; in sandbox mode it is rewritten to the
    sandbox's simulated copy (``/sandbox/oauth/<key>/api/<host>/<path>``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    method: Literal["GET", "POST"] = "GET"
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    #: JSON body of a ``POST`` list call.
    json_body: dict[str, Any] | None = None
    #: Header carrying the access token and its scheme (``Access-Token`` without scheme for
    #: TikTok; ``Authorization: Bearer`` everywhere else).
    token_header: str = "Authorization"
    token_scheme: str | None = "Bearer"
    #: Query parameters filled from the OAuth app's credentials (TikTok ``app_id``/``secret``).
    credential_query: dict[str, Literal["client_id", "client_secret"]] = Field(default_factory=dict)
    #: Headers filled from the OAuth app's extras (Google Ads ``developer-token``); omitted
    #: when the app has no such extra.
    app_headers: dict[str, str] = Field(default_factory=dict)
    #: Where the choices sit: a dotted path where ``[]`` walks every element of a list
    #: (``accountSummaries[].propertySummaries[]``); ``""`` is the body itself.
    items: str
    #: Path of the value / label inside one item (the label falls back to the value).
    value: str
    label: str | None = None
    #: Anchored regular expression with one group taking the value out of the raw value
    #: (``^customers/([0-9]+)$``); items that do not match are skipped.
    value_pattern: str | None = None
    #: A response whose ``status_path`` is not one of ``status_ok`` is a failed call
    #: (TikTok answers errors as HTTP 200 with ``code != 0``).
    status_path: str | None = None
    status_ok: list[str | int] = Field(default_factory=list)
    #: An error answer whose ``auth_error_path`` is one of ``auth_error_values`` means the
    #: token was refused (Facebook: HTTP 400 with ``error.code`` 190; TikTok: ``code`` 40105),
    #: like a 401/403.
    auth_error_path: str | None = None
    auth_error_values: list[str | int] = Field(default_factory=list)
    #: Token pagination: the next page's token (path in the response) sent as
    #: ``next_token_param``; or ``next_url``: the path of an absolute next-page URL (same
    #: origin only).
    next_token: str | None = None
    next_token_param: str | None = None
    next_url: str | None = None


class PickerField(BaseModel):
    """One Fivetran ``config`` field the end-user chooses after consent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The Fivetran config field (``accounts``, ``properties``, ``site_urls`` …).
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    title: str
    #: A list field (Fivetran ``string_list``): one or more values; else exactly one.
    multiple: bool = True
    request: PickerRequest


class PickerSpec(BaseModel):
    """Post-consent configuration: what the end-user picks and where the choices come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[PickerField] = Field(min_length=1)
    #: Constant config set together with the choice (``sync_mode: SpecificAccounts``).
    config: dict[str, str] = Field(default_factory=dict)
    #: Verification status of the list-endpoint facts (URL, method, response paths).
    verification: Verification = Field(default_factory=Verification)


IdentitySource = Literal["token_response", "id_token", "endpoint", "callback", "input", "none"]


class IdentitySpec(BaseModel):
    """Where the provider-side account identity of a connection comes from (catalog data).

    ``source`` is one of:

    * ``token_response`` — ``id`` / ``label`` are dotted JSON paths into the code-exchange
      response (``data.gid``); ``id_pattern`` may cut the id out of a string (Salesforce's
      ``id`` URL → org id);
    * ``id_token`` — ``id`` / ``label`` are claims of the OpenID Connect ``id_token`` the
      token endpoint returned (``scopes`` adds ``openid`` … to the request);
    * ``endpoint`` — an identity call: ``url`` (``{input}`` placeholders), ``method``,
      ``auth`` (how the access token is sent: ``bearer`` or ``header:<Name>``, never in a
      URL, where access logs would keep it) and ``headers``; ``id`` / ``label`` are dotted
      paths into its JSON answer;
    * ``callback`` — a (verified) callback query parameter named by ``id`` (QuickBooks
      ``realmId``, Shopify's HMAC-signed ``shop``);
    * ``input`` — the end-user input that names the account (Zendesk subdomain);
    * ``none`` — the provider offers no identity source; ``reason`` says why. Identity
      checks are then skipped (and reported as such in ``providers list``).

    ``label_format`` builds the display label (``{id}``, ``{label}``); ``verification``
    records how far these facts are established, like other catalog facts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: IdentitySource
    id: str | None = None
    label: str | None = None
    label_format: str | None = None
    id_pattern: str | None = None
    url: str | None = None
    method: Literal["GET", "POST"] = "GET"
    #: bearer: ``Authorization: Bearer``; ``header:<Name>``: the raw token in that header.
    auth: str = Field("bearer", pattern=r"^(?:bearer|header:[A-Za-z0-9-]{1,64})$")
    headers: dict[str, str] = Field(default_factory=dict)
    #: Scopes the identity source needs on top of the provider's (requested, not required).
    scopes: list[str] = Field(default_factory=list)
    reason: str | None = None
    verification: Verification = Field(default_factory=Verification)

    @model_validator(mode="after")
    def _consistent(self) -> IdentitySpec:
        if self.source == "none":
            if not self.reason:
                raise ValueError("identity source 'none' needs a reason")
            return self
        if not self.id:
            raise ValueError(f"identity source {self.source!r} needs 'id'")
        if self.source == "endpoint":
            if not self.url:
                raise ValueError("identity source 'endpoint' needs 'url'")
            if not (
                self.auth in ("bearer", "path")
                or (
                    self.auth.startswith(("header:", "query:"))
                    and len(self.auth.split(":", 1)[1]) > 0
                )
            ):
                raise ValueError("identity auth must be bearer, path, header:<Name> or query:<p>")
            if (self.auth == "path") != ("{access_token}" in self.url):
                raise ValueError("identity auth 'path' and an {access_token} url go together")
        if self.id_pattern is not None:
            try:
                compiled = re.compile(self.id_pattern)
            except re.error as exc:
                raise ValueError(f"identity id_pattern: {exc}") from None
            if compiled.groups != 1:
                raise ValueError("identity id_pattern needs exactly one capturing group")
        return self

    @property
    def declared(self) -> bool:
        """Whether the provider has an identity source (not ``none``)."""
        return self.source != "none"

    def public(self) -> dict[str, Any]:
        """The public view (``providers list``)."""
        out: dict[str, Any] = {"identity_source": self.source}
        if self.source == "none":
            out["identity_checks"] = "skipped"
            out["identity_reason"] = self.reason
        else:
            out["identity_verified"] = self.verification.verified
        return out


UNDECLARED_IDENTITY = IdentitySpec(
    source="none", reason="no identity source declared for this provider"
)


class ProviderSpec(BaseModel):
    """One OAuth 2.0 source app. URL fields may contain ``{input}`` placeholders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    display_name: str
    fivetran_service: str
    issuer: str
    authorization_url: str
    token_url: str
    revocation_url: str | None = None
    introspection_url: str | None = None

    scopes: list[str] = Field(default_factory=list)
    scope_separator: str = " "
    #: Scopes that must be granted (default: every scope in ``scopes``). A narrower grant
    #: fails the exchange with ``insufficient_scope``.
    required_scopes: list[str] | None = None
    extra_authorization_params: dict[str, str] = Field(default_factory=dict)
    extra_token_params: dict[str, str] = Field(default_factory=dict)
    response_type: str = "code"
    response_mode: str | None = None
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code", "refresh_token"])

    pkce: bool = True
    token_auth_method: TokenAuthMethod = "client_secret_basic"
    revocation_auth_method: TokenAuthMethod | None = None
    #: For ``json_body``: token-request field → name the provider expects (others dropped).
    json_body_fields: dict[str, str] = Field(default_factory=dict)

    requires_refresh_token: bool = True
    #: Names the provider setting that yields a refresh token, for the R12 error message.
    refresh_token_knob: str | None = None
    refresh_token_rotation: Rotation = "no"
    #: Revoke the refresh token a re-authorization replaced (RFC 7009). Off where revoking
    #: one token ends the whole authorization, new tokens included (Google).
    revoke_replaced_refresh_token: bool = True
    #: Re-send ``scope`` on refresh (only where the provider requires it, e.g. bingads).
    refresh_sends_scope: bool = False

    client_id_param: str = "client_id"
    code_param: str = "code"
    token_response_key: str | None = None
    token_type_default: str | None = None
    #: token-response key → metadata key (kept in ``TokenResult.metadata``).
    token_metadata: dict[str, str] = Field(default_factory=dict)
    #: callback query parameter → metadata key.
    callback_metadata: dict[str, str] = Field(default_factory=dict)
    #: The provider's metadata advertises RFC 9207 ``iss`` in authorization responses.
    authorization_response_iss: bool = False

    hooks: list[str] = Field(default_factory=list)
    #: Post-consent configuration (account pickers); ``None`` for sources without a choice.
    picker: PickerSpec | None = None
    inputs: list[InputSpec] = Field(default_factory=list)
    fivetran: FivetranMapping = Field(default_factory=FivetranMapping)

    #: Sandbox emulation switches (the sandbox authorization server reads them).
    sandbox: dict[str, str | bool | int] = Field(default_factory=dict)
    #: Verification status of the facts above (see :class:`Verification`).
    verification: Verification = Field(default_factory=Verification)
    #: An operator-defined provider for a service that has a catalog provider names the
    #: catalog provider it replaces (``replaces: salesforce``); without it startup refuses.
    replaces: str | None = None
    #: Discover the issuer's RFC 8414 metadata at startup (always on for operator issuers).
    discover_metadata: bool = False
    #: Where the connected account's identity comes from (``app/providers/identity.yaml``).
    identity: IdentitySpec = Field(default_factory=lambda: UNDECLARED_IDENTITY)


class ProviderOverride(BaseModel):
    """Operator overrides of a catalog provider's endpoints (custom domains, testing)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scopes: list[str] | None = None
    extra_authorization_params: dict[str, str] | None = None
