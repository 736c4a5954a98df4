"""Typed settings for the whole service (pydantic-settings).

Every setting is read here and nowhere else. Environment variables use the ``PBF_`` prefix and
``__`` between nested sections, e.g. ``PBF_FIVETRAN__API_KEY``. A few well-known names are
accepted without the prefix (``DATABASE_URL``, ``REDIS_URL``, ``PBF_ENCRYPTION_KEYS``).

Two modes:

* ``sandbox`` — safe embedded defaults for a laptop: SQLite under ``./var/``, a generated local
  keyring, the Fivetran simulator and the sandbox OAuth authorization server mounted in-process.
* ``production`` — refuses to start unless every production item is configured; see
  :func:`production_problems`, which lists one clear message per missing item.

Nothing here does work at import time: :func:`load_settings` builds a ``Settings`` object when
the app factory or the CLI asks for one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from limits import parse
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.kit.app_redirects import app_redirect_entry_problem

Mode = Literal["sandbox", "production"]
GroupStrategy = Literal["per_end_user", "shared", "per_service"]


class ApiSettings(BaseModel):
    """HTTP API behaviour."""

    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest accepted request body.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed for return_to and for starting a connect flow "
        "(scheme://host[:port]). Loopback origins are added in sandbox mode.",
    )
    idempotency_ttl_hours: int = Field(
        24, ge=1, description="How long Idempotency-Key replays last."
    )
    key_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=300,
        description="How long a verified API key is remembered in-process (saves a database "
        "read per request). Revocation is immediate in the revoking process and takes up to "
        "this long in other processes; 0 disables the cache.",
    )
    allowed_app_redirects: list[str] = Field(
        default_factory=list,
        description="Native-app return_to targets (RFC 8252 private-use URI schemes), each "
        "'com.example.app:/path' (exact) or ending in '/' (path prefix); the scheme must be "
        "lower-case reverse-domain form. Claimed https links use allowed_origins instead.",
    )

    @field_validator("allowed_app_redirects")
    @classmethod
    def _check_app_redirects(cls, value: list[str]) -> list[str]:
        for entry in value:
            problem = app_redirect_entry_problem(entry)
            if problem is not None:
                raise ValueError(f"allowed_app_redirects entry {entry!r}: {problem}")
        return value


class FivetranSettings(BaseModel):
    """How we reach the Fivetran REST API."""

    base_url: str | None = Field(
        None,
        description="Fivetran API base URL. Default https://api.fivetran.com; in sandbox mode the "
        "embedded simulator.",
    )
    api_key: SecretStr | None = Field(None, description="Fivetran API key (Basic auth user).")
    api_secret: SecretStr | None = Field(None, description="Fivetran API secret.")
    timeout_seconds: float = Field(30.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(3, ge=0, le=10, description="Retries of idempotent calls.")
    retry_backoff_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="First retry delay after a 5xx or timeout (doubles per retry, capped at "
        "10 s, jittered between half and all of it).",
    )
    max_retry_after_seconds: float = Field(
        60.0, ge=0, description="Longest Retry-After we wait inline before giving up."
    )
    hourly_request_budget: int = Field(
        18_000, ge=1, description="Client-side cap under Fivetran's 20,000 requests/hour."
    )
    requests_per_second: float = Field(
        50.0,
        ge=0,
        description="Client-side per-second budget (token bucket, shared through Redis when "
        "redis_url is set) that smooths bursts such as fleet operations; 0 turns it off.",
    )
    requests_burst: int = Field(
        0,
        ge=0,
        description="Requests the per-second budget lets through at once after a quiet spell "
        "(0: one second's worth).",
    )
    webhook_secret: SecretStr | None = Field(
        None, description="Secret of the Fivetran webhook (X-Fivetran-Signature-256)."
    )
    sandbox_key: str = Field(
        "sandbox_key",
        description="API key the embedded Fivetran simulator accepts (sandbox mode; the client "
        "uses it when api_key is unset).",
    )
    sandbox_secret: SecretStr = Field(
        SecretStr("sandbox_secret"), description="API secret the embedded simulator accepts."
    )
    budget_redis_prefix: str = Field(
        "pbf:fivetran:budget", description="Redis key prefix of the shared request budget."
    )


class VaultSettings(BaseModel):
    """Token vault (envelope encryption)."""

    provider: Literal["local", "awskms"] = Field(
        "local",
        description="Key provider for new writes: local keyring, or AWS KMS "
        "(pip install '.[awskms]'). Local keys, if configured, stay readable after a switch.",
    )
    encryption_keys: SecretStr | None = Field(
        None,
        description="Nested spelling of PBF_ENCRYPTION_KEYS (use the top-level name).",
    )
    key_file: Path | None = Field(
        None,
        description="Keyring file, same JSON as PBF_ENCRYPTION_KEYS (e.g. a mounted secret, "
        "mode 0600); 'pbf-headless keys rotate' can add keys to it.",
    )
    aws_kms_key_id: str | None = Field(
        None, description="KMS key id, ARN or alias for the awskms provider."
    )
    aws_region: str | None = Field(None, description="AWS region of the KMS key.")
    aws_endpoint_url: str | None = Field(None, description="KMS endpoint override.")


class ConnectSettings(BaseModel):
    """Connect sessions and OAuth flows (the browser leg of onboarding)."""

    start_token_ttl_seconds: int = Field(
        300, ge=30, le=300, description="How long a connect_url may wait before it is started."
    )
    flow_ttl_seconds: int = Field(
        600, ge=60, le=600, description="How long the OAuth leg (start to callback) may take."
    )
    card_ttl_seconds: int = Field(
        3600,
        ge=60,
        le=86400,
        description="How long the callback of a Connect Card link accepts the end-user's "
        "return (Fivetran's card URI itself is valid one day).",
    )
    expiry_sweep_seconds: float = Field(
        60.0,
        ge=0,
        description="How often expired connect sessions are closed (their reserved connection "
        "failed, connect_session.failed emitted); 0 disables the background sweep.",
    )
    callback_grace_seconds: float = Field(
        600.0,
        ge=1,
        description="A callback that consumed its state this long ago and never finished was "
        "interrupted (the process died): the sweep settles its session (finished by the resume "
        "when the tokens were stored, failed otherwise). Keep it above the longest callback "
        "(token exchange plus Fivetran calls with their timeouts and retries).",
    )
    reauth_other_account: Literal["refuse", "allow"] = Field(
        "refuse",
        description="Re-authorizing a connection as another provider account than the one "
        "recorded: refuse (session fails with account_mismatch, the new tokens are revoked "
        "and never stored, the connection is unchanged) or allow (the connection moves to the "
        "new account).",
    )
    duplicate_account: Literal["refuse", "flag", "return_existing"] = Field(
        "refuse",
        description="Connecting a provider account the same end-user already has in a "
        "non-deleted connection of the same service: refuse (session fails with "
        "account_already_connected, nothing created), flag (created with duplicate_of set) "
        "or return_existing (the session completes with the existing connection; the new "
        "tokens are discarded).",
    )


class RateLimitSettings(BaseModel):
    """Rate limits of the public browser endpoints (``/connect/*``, ``/oauth/callback/*``):
    per client IP and per session token (start token or OAuth ``state``), moving windows,
    shared through Redis when ``redis_url`` is set (in memory otherwise)."""

    enabled: bool = Field(True, description="Apply the browser endpoint rate limits.")
    per_ip: str = Field(
        "300/minute", description='Requests per client IP, e.g. "300/minute" or "20/second".'
    )
    per_session: str = Field(
        "20/minute", description="Requests per connect token or OAuth state value."
    )
    redis_prefix: str = Field("pbf:ratelimit", description="Redis key prefix of the counters.")

    @field_validator("per_ip", "per_session")
    @classmethod
    def _parses(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"not a rate limit: {value!r}") from exc
        return value


class AuditSettings(BaseModel):
    """The audit trail (append-only; see ``GET /v1/audit``)."""

    retention_days: int = Field(
        365,
        ge=0,
        description="The worker purges audit records older than this (0 keeps them forever).",
    )


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _page_url_problem(value: str) -> str | None:
    """Why ``value`` cannot be linked from our pages (an absolute http(s) URL, no userinfo,
    no whitespace, control characters, quotes or backslashes), or ``None``."""
    if len(value) > 2048:
        return "longer than 2048 characters"
    if not value.isascii() or any(c.isspace() or ord(c) < 0x20 or c in "\\\"'<>`" for c in value):
        return "must be ASCII without whitespace, control characters, quotes or backslashes"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on an invalid port
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not value.startswith(f"{parts.scheme}://"):
        return "must be an absolute https:// URL"
    if not parts.hostname or "@" in parts.netloc or "%" in parts.netloc:
        return "must name a host and no userinfo"
    return None


class BrandingSettings(BaseModel):
    """How the end-user pages (confirmation, errors) present the company."""

    company_name: str | None = Field(
        None,
        min_length=1,
        max_length=80,
        description="Company display name shown on the end-user pages (default: none shown).",
    )
    logo_url: str | None = Field(
        None,
        description="Logo image URL (https; http on loopback in sandbox mode). The pages' "
        "Content-Security-Policy allows images from exactly this URL's origin.",
    )
    accent_color: str = Field("#0b5cff", description="Accent colour of buttons and links, #rrggbb.")
    support_url: str | None = Field(
        None, description="https link to the company's help page, shown on every page."
    )

    @field_validator("company_name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and (
            value != value.strip() or any(not c.isprintable() for c in value)
        ):
            raise ValueError("must be printable text without leading or trailing spaces")
        return value

    @field_validator("accent_color")
    @classmethod
    def _check_color(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}", value):
            raise ValueError("must be a CSS colour in #rrggbb form")
        return value.lower()

    @field_validator("logo_url", "support_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and (problem := _page_url_problem(value)) is not None:
            raise ValueError(problem)
        return value

    def problems(self, *, sandbox: bool) -> list[str]:
        """Mode-dependent rules: https everywhere; an http logo on loopback in sandbox mode."""
        out: list[str] = []
        if self.support_url is not None and not self.support_url.startswith("https://"):
            out.append("PBF_BRANDING__SUPPORT_URL must be an https:// URL.")
        if self.logo_url is not None and not self.logo_url.startswith("https://"):
            host = urlsplit(self.logo_url).hostname or ""
            if not (sandbox and host in _LOOPBACK_HOSTS):
                out.append(
                    "PBF_BRANDING__LOGO_URL must be an https:// URL "
                    "(http:// only on loopback in sandbox mode)."
                )
        return out


class DestinationTemplate(BaseModel):
    """Destination created for each dedicated (``per_end_user``) group."""

    service: str = Field("big_query", description="Fivetran destination service.")
    region: str | None = Field("GCP_US_EAST4", description="Fivetran region of the destination.")
    time_zone_offset: str = Field("0", description='Time zone offset, "-11" … "+12".')
    config: dict[str, object] = Field(
        default_factory=lambda: dict[str, object](project_id="pbf-sandbox", data_set_location="US"),
        description="Destination config (service-specific).",
    )


class SchemaPolicy(BaseModel):
    """Platform schema policy applied at creation; wins over what callers ask."""

    schema_change_handling: Literal["ALLOW_ALL", "ALLOW_COLUMNS", "BLOCK_ALL"] = Field(
        "ALLOW_COLUMNS",
        description="Most permissive schema_change_handling a connection may have.",
    )
    blocked_tables: list[str] = Field(
        default_factory=list,
        description='Tables never allowed, as "schema.table" glob patterns.',
    )
    hashed_columns: list[str] = Field(
        default_factory=list,
        description='Columns always hashed, as "schema.table.column" glob patterns.',
    )


class OnboardingSettings(BaseModel):
    """End-users, groups and connections."""

    group_strategy: GroupStrategy = Field(
        "per_end_user", description="per_end_user | shared | per_service."
    )
    shared_group_id: str | None = Field(
        None, description="Fivetran group used by every end-user (shared strategy)."
    )
    destination_template: DestinationTemplate = Field(default_factory=DestinationTemplate)
    unpause_after_setup: bool = Field(
        True, description="Un-pause a connection once setup tests pass and the policy is set."
    )
    token_retention: Literal["keep", "discard"] = Field(
        "keep",
        description="keep: tokens stay encrypted for re-creation; discard: shredded once "
        "Fivetran confirmed the connection.",
    )
    schema_policy: SchemaPolicy = Field(default_factory=SchemaPolicy)
    create_attempts: int = Field(
        3, ge=1, le=10, description="Fivetran create attempts when the outcome is ambiguous."
    )
    connect_card: Literal["fallback", "all"] = Field(
        "fallback",
        description="Which services /v1/sources offers through Fivetran's Connect Card "
        "(auth_method connect_card): fallback = those no OAuth or credential route reaches; "
        "all = every service (after its other ways).",
    )


class EventEndpointSettings(BaseModel):
    """One outbound event endpoint of the company (signed deliveries)."""

    id: str = Field(
        ..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$", description="Stable id."
    )
    url: str = Field(..., description="Where deliveries are POSTed (https:// in production).")
    secrets: list[SecretStr] = Field(
        ...,
        min_length=1,
        max_length=2,
        description="Signing secrets: [current] or [current, previous] during a rotation.",
    )
    events: list[str] | None = Field(
        None, description="Event kinds sent to this endpoint (default: every kind)."
    )


class EventsSettings(BaseModel):
    """Fivetran webhooks in, the signed outbound event feed out, worker and reconciliation."""

    endpoints: list[EventEndpointSettings] = Field(
        default_factory=list,
        description='Outbound endpoints, JSON list of {"id","url","secrets":[...],"events"?}.',
    )
    run_worker_in_api: bool = Field(
        True, description="Run the delivery and reconciliation loops inside the API process."
    )
    poll_interval_seconds: float = Field(1.0, gt=0, description="Worker idle poll interval.")
    delivery_timeout_seconds: float = Field(10.0, gt=0, description="Per delivery HTTP timeout.")
    max_attempts: int = Field(
        20,
        ge=1,
        description="Attempts before a delivery is dead (20 with the default backoff: "
        "about 5 to 10 hours).",
    )
    backoff_base_seconds: float = Field(5.0, gt=0, description="First retry delay (doubles).")
    backoff_max_seconds: float = Field(3600.0, gt=0, description="Longest retry delay.")
    lease_seconds: float = Field(
        60.0, gt=0, description="How long a worker owns a claimed delivery before others retry."
    )
    batch_size: int = Field(50, ge=1, le=1000, description="Deliveries claimed per iteration.")
    reconcile_interval_seconds: float = Field(
        300.0, gt=0, description="How often the reconciliation job runs."
    )
    reconcile_stale_after_seconds: float = Field(
        3600.0, gt=0, description="Connections not refreshed for this long are reconciled."
    )
    reconcile_budget_share: float = Field(
        0.1, gt=0, le=1, description="Share of the hourly Fivetran budget reconciliation may use."
    )
    retention_days: int = Field(
        30,
        ge=0,
        description="Delete delivered/dead events and webhook receipts older than this "
        "(0 keeps them forever).",
    )
    register_webhook_on_startup: bool = Field(
        False,
        description="Register/update the Fivetran webhook at startup (as 'pbf-headless fivetran "
        "webhooks ensure' does). 'serve --sandbox' turns it on unless set explicitly.",
    )


class OAuthAppSettings(BaseModel):
    """One provider's OAuth app (client credentials) and optional provider overrides.

    Besides the fields below, any provider field may be overridden
    (``__TOKEN_AUTH_METHOD``, ``__REQUIRED_SCOPES``, ``__AUTHORIZATION_RESPONSE_ISS`` …); the
    provider registry validates them and refuses unknown keys at startup.
    """

    model_config = ConfigDict(extra="allow")

    client_id: str | None = Field(None, description="OAuth client id of the app.")
    client_secret: SecretStr | None = Field(None, description="OAuth client secret of the app.")
    client_secret_file: Path | None = Field(
        None, description="File holding the client secret (mounted secret); wins over inline."
    )
    client_secret_in_vault: bool = Field(
        False,
        description="The client secret is kept in the token vault (owner oauth_app), set with "
        "'pbf-headless providers set-secret <key>'; read when a flow needs it.",
    )
    extras: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Provider extras handed to Fivetran, e.g. google_ads developer_token.",
    )
    issuer: str | None = Field(None, description="Override of the provider's issuer.")
    authorization_url: str | None = Field(None, description="Override (custom domain, tests).")
    token_url: str | None = Field(None, description="Override of the token endpoint.")
    revocation_url: str | None = Field(None, description="Override of the revocation endpoint.")
    scopes: list[str] | None = Field(None, description="Override of the requested scopes.")


class OAuthSettings(BaseModel):
    """OAuth source apps: credentials per provider, overrides and custom providers."""

    apps: dict[str, OAuthAppSettings] = Field(
        default_factory=dict,
        description="OAuth app per provider key: PBF_OAUTH__APPS__<KEY>__CLIENT_ID, "
        "__CLIENT_SECRET or __CLIENT_SECRET_FILE, __EXTRAS__<NAME> (e.g. google_ads "
        "developer_token), and endpoint overrides __ISSUER, __AUTHORIZATION_URL, __TOKEN_URL, "
        "__REVOCATION_URL, __SCOPES (JSON list). Without an app a provider is unusable "
        "(sandbox mode: served by the sandbox authorization server).",
    )
    providers: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Custom providers (same schema as app/providers/catalog.yaml entries), "
        "as JSON in PBF_OAUTH__PROVIDERS.",
    )
    providers_file: Path | None = Field(
        None, description="YAML file of custom providers (same schema as the catalog)."
    )
    allow_insecure_loopback: bool = Field(
        False,
        description="Allow http:// provider endpoints on loopback hosts outside sandbox mode "
        "(tests only). Never enable in production.",
    )
    token_timeout_seconds: float = Field(
        15.0, gt=0, le=120, description="Timeout of token, refresh and revocation calls."
    )
    sandbox_auto_approve: bool = Field(
        False,
        description="Sandbox authorization server approves consent without showing the page "
        "(login_hint=auto does the same per request).",
    )


class SandboxSettings(BaseModel):
    """The sandbox counterparts (Fivetran simulator, sandbox OAuth server); sandbox mode only."""

    sync_seconds: float = Field(
        5.0,
        ge=0,
        description="A simulated sync (sync, resync, first unpause) finishes by itself, "
        "successfully, after this many seconds and sends its sync_end webhook (0: only the "
        "simulator's control API finishes syncs).",
    )
    persist: bool = Field(
        False,
        description="Keep the simulator's and the sandbox OAuth server's state in state_file "
        "across restarts. 'serve --sandbox' turns it on unless set explicitly.",
    )
    state_file: Path | None = Field(
        None,
        description="Where the sandbox state is kept (default <data_dir>/sandbox-state.json; "
        "delete it, or POST /sandbox/fivetran/_control/reset, to start afresh).",
    )
    counterparties_url: str | None = Field(
        None,
        description="Base URL of a separate 'pbf-headless sandbox-counterparties' process "
        "(the Fivetran simulator and the sandbox OAuth server in their own process, e.g. "
        "http://127.0.0.1:8001). Set it for the service, its worker and 'onboarding resume' "
        "AND for the counterparties process: the service then mounts neither counterpart and "
        "sends Fivetran calls (unless PBF_FIVETRAN__BASE_URL is set) and sandboxed OAuth there; "
        "the counterparties process listens on it and takes PBF_PUBLIC_BASE_URL as the "
        "service's address (redirect URIs). Unset: both live in the 'serve --sandbox' process.",
    )

    @field_validator("counterparties_url")
    @classmethod
    def _check_counterparties_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("sandbox.counterparties_url must be an http(s) URL with a host")
        if parts.query or parts.fragment or parts.path.strip("/"):
            raise ValueError("sandbox.counterparties_url must be a base URL (no path or query)")
        return f"{parts.scheme}://{parts.netloc}"


class Settings(BaseSettings):
    """All settings of pbf-headless."""

    model_config = SettingsConfigDict(
        env_prefix="PBF_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    mode: Mode = Field("sandbox", description="sandbox (embedded, laptop-safe) or production.")
    data_dir: Path = Field(Path("var"), description="Working data: SQLite file, sandbox keyring.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PBF_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///<data_dir>/pbf.db",
    )
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PBF_REDIS_URL", "REDIS_URL"),
        description="Redis for the shared Fivetran request budget across replicas.",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Externally visible base URL; OAuth redirect URIs are built from it, "
        "never from Host headers.",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR.")
    log_json: bool = Field(True, description="JSON log lines (false: plain text for humans).")
    db_pool_size: int = Field(5, ge=1, description="PostgreSQL connection pool size.")
    db_max_overflow: int = Field(10, ge=0, description="Extra connections above the pool.")
    db_sqlite_cache_kib: int = Field(
        256,
        ge=16,
        description="SQLite only: page cache of each pooled connection, in KiB (SQLite's own "
        "default is 2,048; with pool size + overflow connections open, each caching the same "
        "file over the operating system's cache, that was ~25 MB of a worker's memory).",
    )

    api: ApiSettings = Field(default_factory=ApiSettings)
    fivetran: FivetranSettings = Field(default_factory=FivetranSettings)
    vault: VaultSettings = Field(default_factory=VaultSettings)
    encryption_keys: SecretStr | None = Field(
        None,
        validation_alias="PBF_ENCRYPTION_KEYS",
        description='Local keyring: JSON {"active": kid, "keys": {kid: base64 of 32 random '
        "bytes}}. Sandbox default: generated <data_dir>/keyring.json (0600). Production: "
        "this, PBF_VAULT__KEY_FILE or awskms is required.",
    )
    events: EventsSettings = Field(default_factory=EventsSettings)
    onboarding: OnboardingSettings = Field(default_factory=OnboardingSettings)
    connect: ConnectSettings = Field(default_factory=ConnectSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    oauth: OAuthSettings = Field(default_factory=OAuthSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    branding: BrandingSettings = Field(default_factory=BrandingSettings)

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @model_validator(mode="after")
    def _feed_vault_keys(self) -> Settings:
        """PBF_ENCRYPTION_KEYS (top level) is where the vault's local keyring comes from."""
        top, nested = self.encryption_keys, self.vault.encryption_keys
        if top is not None and nested is not None:
            if top.get_secret_value() != nested.get_secret_value():
                raise ValueError(
                    "PBF_ENCRYPTION_KEYS and PBF_VAULT__ENCRYPTION_KEYS differ; set only one"
                )
        elif top is not None:
            self.vault.encryption_keys = top
        return self

    @model_validator(mode="after")
    def _check_branding(self) -> Settings:
        problems = self.branding.problems(sandbox=self.is_sandbox)
        if problems:
            raise ValueError(" ".join(problems))
        return self

    @property
    def is_sandbox(self) -> bool:
        return self.mode == "sandbox"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgresql://") or url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.split("://", 1)[1]
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'pbf.db').as_posix()}"

    @property
    def sandbox_state_file(self) -> Path:
        return self.sandbox.state_file or self.data_dir / "sandbox-state.json"

    @property
    def sandbox_base_url(self) -> str:
        """Where the sandbox counterparts answer: a separate counterparties process when
        ``sandbox.counterparties_url`` is set, else this service (``public_base_url``)."""
        return self.sandbox.counterparties_url or self.public_base_url

    @property
    def counterparties_elsewhere(self) -> bool:
        """Sandbox mode with the counterparts in their own process (not mounted here)."""
        return self.is_sandbox and self.sandbox.counterparties_url is not None

    @property
    def fivetran_base_url(self) -> str:
        if self.fivetran.base_url:
            return self.fivetran.base_url.rstrip("/")
        if self.is_sandbox:
            return f"{self.sandbox_base_url}/sandbox/fivetran"
        return "https://api.fivetran.com"


def production_problems(settings: Settings) -> list[str]:
    """One human message per item production mode needs and does not have."""
    problems: list[str] = []
    if settings.mode != "production":
        return problems
    if not settings.database_url:
        problems.append("DATABASE_URL is not set (production needs PostgreSQL).")
    elif settings.effective_database_url.startswith("sqlite"):
        problems.append("DATABASE_URL points at SQLite; production needs PostgreSQL.")
    if settings.fivetran.api_key is None or settings.fivetran.api_secret is None:
        problems.append("PBF_FIVETRAN__API_KEY and PBF_FIVETRAN__API_SECRET must be set.")
    if settings.fivetran.webhook_secret is None:
        problems.append("PBF_FIVETRAN__WEBHOOK_SECRET must be set (verifies Fivetran webhooks).")
    if settings.vault.provider == "local":
        if settings.vault.encryption_keys is None and settings.vault.key_file is None:
            problems.append(
                "No encryption keys: set PBF_ENCRYPTION_KEYS or PBF_VAULT__KEY_FILE "
                "(or PBF_VAULT__PROVIDER=awskms)."
            )
        elif settings.vault.encryption_keys is not None and settings.vault.key_file is not None:
            problems.append("Set only one of PBF_ENCRYPTION_KEYS and PBF_VAULT__KEY_FILE.")
        elif settings.vault.key_file is not None and not settings.vault.key_file.is_file():
            problems.append(f"PBF_VAULT__KEY_FILE {settings.vault.key_file} does not exist.")
    elif settings.vault.provider == "awskms" and not settings.vault.aws_kms_key_id:
        problems.append("PBF_VAULT__AWS_KMS_KEY_ID must be set for the awskms provider.")
    if settings.onboarding.group_strategy == "shared" and not settings.onboarding.shared_group_id:
        problems.append("PBF_ONBOARDING__SHARED_GROUP_ID must be set for the shared strategy.")
    if (
        settings.onboarding.group_strategy == "per_end_user"
        and "destination_template" not in settings.onboarding.model_fields_set
    ):
        problems.append(
            "PBF_ONBOARDING__DESTINATION_TEMPLATE must be configured for the per_end_user "
            "strategy (the built-in template is a sandbox placeholder)."
        )
    if not settings.public_base_url.startswith("https://"):
        problems.append("PBF_PUBLIC_BASE_URL must be an https:// URL in production.")
    for endpoint in settings.events.endpoints:
        if not endpoint.url.startswith("https://"):
            problems.append(f"PBF_EVENTS__ENDPOINTS entry {endpoint.id!r} needs an https:// url.")
        if any(len(s.get_secret_value()) < 16 for s in endpoint.secrets):
            problems.append(
                f"PBF_EVENTS__ENDPOINTS entry {endpoint.id!r}: signing secrets need 16+ characters."
            )
    for origin in settings.api.allowed_origins:
        if not origin.startswith("https://"):
            problems.append(f"PBF_API__ALLOWED_ORIGINS entry {origin!r} must be https://.")
    if settings.oauth.allow_insecure_loopback:
        problems.append("PBF_OAUTH__ALLOW_INSECURE_LOOPBACK must be false in production.")
    for key, oauth_app in settings.oauth.apps.items():
        env = f"PBF_OAUTH__APPS__{key.upper()}"
        if not oauth_app.client_id:
            problems.append(f"{env}__CLIENT_ID must be set (an app is configured for {key!r}).")
        if (
            oauth_app.client_secret is None
            and oauth_app.client_secret_file is None
            and not oauth_app.client_secret_in_vault
        ):
            problems.append(
                f"{env}__CLIENT_SECRET, __CLIENT_SECRET_FILE or __CLIENT_SECRET_IN_VAULT "
                "must be set."
            )
        elif (path := oauth_app.client_secret_file) is not None and not path.is_file():
            problems.append(f"{env}__CLIENT_SECRET_FILE {path} does not exist.")
    return problems


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags, tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
