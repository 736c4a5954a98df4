"""The data schema of one provider: used by ``catalog.yaml`` and by operator-defined providers.

A provider is described as data (:class:`ProviderSpec`); the few quirks data cannot express
are named hooks (``hooks:``) implemented in :mod:`app.providers.hooks`. Semantic checks that
need the whole catalog (unique issuers, https-only, no implicit/password grant, known
Fivetran service) live in :mod:`app.providers.validation` and report one message per problem.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "raw_basic", "json_body"]
Rotation = Literal["yes", "no", "optional", "n/a"]
AuthValue = Literal["client_access", "refresh_token", "access_token"]
DEFAULT_AUTH: tuple[AuthValue, ...] = ("client_access", "refresh_token")


class InputSpec(BaseModel):
    """One value the end-user enters (subdomain, shop, My Domain host, region …)."""

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

    input: str | None = None
    metadata: str | None = None
    app: str | None = None
    const: str | None = None
    #: Python format string applied to the value (``{value}``), e.g. ``https://{value}``.
    format: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ValueSource:
        chosen = [k for k in ("input", "metadata", "app", "const") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError("set exactly one of input, metadata, app, const")
        return self


class FivetranMapping(BaseModel):
    """How a token result maps onto the Fivetran create-connection ``auth``/``config``."""

    model_config = ConfigDict(extra="forbid")

    auth: list[AuthValue] = Field(default_factory=lambda: list(DEFAULT_AUTH))
    #: Additional ``auth`` targets (dotted, e.g. ``realm_id``, ``client_access.developer_token``).
    auth_extra: dict[str, ValueSource] = Field(default_factory=dict)
    config: dict[str, ValueSource] = Field(default_factory=dict)


class ProviderSpec(BaseModel):
    """One OAuth 2.0 source app. URL fields may contain ``{input}`` placeholders."""

    model_config = ConfigDict(extra="forbid")

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
    inputs: list[InputSpec] = Field(default_factory=list)
    fivetran: FivetranMapping = Field(default_factory=FivetranMapping)

    #: Sandbox emulation switches (the sandbox authorization server reads them).
    sandbox: dict[str, str | bool | int] = Field(default_factory=dict)


class ProviderOverride(BaseModel):
    """Operator overrides of a catalog provider's endpoints (custom domains, testing)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scopes: list[str] | None = None
    extra_authorization_params: dict[str, str] | None = None
