"""Provider objects and the registry the rest of the service uses.

:class:`Provider` wraps one validated :class:`~app.providers.spec.ProviderSpec` with the
behaviour around it: end-user input validation, endpoint templating, callback helpers and
the mapping of a :class:`~app.providers.tokens.TokenResult` onto Fivetran's ``auth`` and
``config``. :class:`ProviderRegistry` (``app.state.providers``) holds every provider and the
OAuth app credentials configured for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidInput
from app.fivetran.payloads import AuthValues
from app.providers.discovery import MetadataCache
from app.providers.errors import ProviderNotConfigured, UnknownProvider
from app.providers.hooks import get_hook
from app.providers.oauth1 import OAuth1Registry
from app.providers.spec import InputSpec, ProviderSpec, ValueSource
from app.providers.tokens import TokenResult
from app.vault.secret import Secret
from app.vault.service import Vault

PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
#: Characters a templated URL part may contain, whatever the input pattern admits: an
#: operator's loose pattern must never let an end-user inject "/", "?", "#", "@" or ":".
URL_SAFE_VALUE = re.compile(r"[A-Za-z0-9._~-]*")
SANDBOX_PATH = "/sandbox/oauth"


def sandbox_client_id(provider_key: str) -> str:
    return f"sandbox-{provider_key}"


def sandbox_client_secret(provider_key: str) -> str:
    """Deterministic sandbox secret with ``+``, ``%`` and ``:`` (exercises RFC 6749 §2.3.1).

    The sandbox authorization server is a local simulation; its clients guard nothing real,
    and a derivable secret lets the Fivetran simulator introspect tokens (R13 test surface).
    """
    return f"sbx+{provider_key}%2Fs3cr3t:with+special%chars"


class AppCredentials(NamedTuple):
    """One OAuth app: ``(client_id, client_secret, extras)`` (extras e.g. developer_token)."""

    client_id: str
    client_secret: Secret
    extras: dict[str, Secret]


@dataclass(frozen=True)
class Endpoints:
    """A provider's endpoints for one set of end-user inputs (stored in the flow row)."""

    issuer: str
    authorization_url: str
    token_url: str
    revocation_url: str | None
    introspection_url: str | None


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{name}`` placeholders; every value was validated against its input pattern."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(name)
        return values[name]

    return PLACEHOLDER.sub(sub, template)


@dataclass(frozen=True)
class FivetranParts:
    """What a provider puts into a Fivetran body, as data: ``auth`` values (placed in the
    service's auth tree by :mod:`app.fivetran.payloads` only) and config additions (Shopify
    ``shop``, Salesforce ``instance_url`` …)."""

    auth: AuthValues
    config: dict[str, Any]


@dataclass(frozen=True)
class Provider:
    """One OAuth source app, ready to use (see :mod:`app.providers` for the flow)."""

    key: str
    spec: ProviderSpec
    #: True when the provider's endpoints point at the embedded sandbox authorization server.
    sandboxed: bool = False
    #: Where the provider came from: ``catalog`` or ``config`` (operator-defined).
    origin: str = "catalog"
    #: Timeout of token, refresh and revocation calls (``PBF_OAUTH__TOKEN_TIMEOUT_SECONDS``).
    timeout_seconds: float = 15.0
    _hooks: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        hooks = tuple(h for h in (get_hook(n) for n in self.spec.hooks) if h is not None)
        object.__setattr__(self, "_hooks", hooks)

    # --- contract attributes ----------------------------------------------------------------

    @property
    def fivetran_service(self) -> str:
        return self.spec.fivetran_service

    @property
    def display_name(self) -> str:
        return self.spec.display_name

    @property
    def scopes(self) -> tuple[str, ...]:
        """Requested scopes: the provider's, then those its identity source needs."""
        extra = [s for s in self.spec.identity.scopes if s not in self.spec.scopes]
        return (*self.spec.scopes, *extra)

    @property
    def requires_refresh_token(self) -> bool:
        return self.spec.requires_refresh_token

    @property
    def required_scopes(self) -> tuple[str, ...]:
        if self.spec.required_scopes is not None:
            return tuple(self.spec.required_scopes)
        return tuple(self.spec.scopes)  # identity scopes are requested, never required

    @property
    def input_specs(self) -> tuple[InputSpec, ...]:
        return tuple(self.spec.inputs)

    @property
    def inputs(self) -> dict[str, Any]:
        """End-user inputs as a JSON Schema object fragment (for the sources API)."""
        properties: dict[str, Any] = {}
        required: list[str] = []
        for spec in self.spec.inputs:
            prop: dict[str, Any] = {
                "type": "string",
                "title": spec.title,
                "pattern": spec.pattern,
                "maxLength": spec.max_length,
            }
            if spec.description:
                prop["description"] = spec.description
            if spec.default is not None:
                prop["default"] = spec.default
            if spec.enum is not None:
                prop["enum"] = list(spec.enum)
            if spec.examples:
                prop["examples"] = list(spec.examples)
            properties[spec.name] = prop
            if spec.required and spec.default is None:
                required.append(spec.name)
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        return schema

    @property
    def token_auth_method(self) -> str:
        return self.spec.token_auth_method

    @property
    def revocation_auth_method(self) -> str:
        return self.spec.revocation_auth_method or self.spec.token_auth_method

    @property
    def code_param(self) -> str:
        return self.spec.code_param

    # --- end-user inputs and endpoints ------------------------------------------------------

    def validate_inputs(self, values: Mapping[str, Any] | None) -> dict[str, str]:
        """Check end-user inputs (422 naming ``inputs.<name>``); returns them with defaults."""
        values = dict(values or {})
        known = {s.name for s in self.spec.inputs}
        for name in values:
            if name not in known:
                raise InvalidInput(
                    f"{self.key} takes no input {name!r}",
                    code="invalid_provider_input",
                    field=f"inputs.{name}",
                )
        result: dict[str, str] = {}
        for spec in self.spec.inputs:
            raw = values.get(spec.name)
            if raw is None:
                if spec.default is not None:
                    result[spec.name] = spec.default
                    continue
                if spec.required:
                    raise InvalidInput(
                        f"{spec.title} is required",
                        code="invalid_provider_input",
                        field=f"inputs.{spec.name}",
                    )
                continue
            if not isinstance(raw, str):
                raise InvalidInput(
                    f"{spec.title} must be a string",
                    code="invalid_provider_input",
                    field=f"inputs.{spec.name}",
                )
            value = raw
            if (
                len(value) > spec.max_length
                or re.fullmatch(spec.pattern, value) is None
                or (spec.enum is not None and value not in spec.enum)
            ):
                raise InvalidInput(
                    f"{spec.title} has an invalid value (expected {spec.pattern})",
                    code="invalid_provider_input",
                    field=f"inputs.{spec.name}",
                )
            result[spec.name] = value
        return result

    def template_values(self, inputs: Mapping[str, str]) -> dict[str, str]:
        values = dict(inputs)
        for spec in self.spec.inputs:
            values.setdefault(spec.name, spec.default or "")
        for hook in self._hooks:
            if hook.template_values is not None:
                values.update(hook.template_values(values))
        return values

    def endpoints(self, inputs: Mapping[str, Any] | None = None) -> Endpoints:
        """Resolve the endpoints for these end-user inputs (validated here)."""
        values = self.template_values(self.validate_inputs(inputs))
        for name, value in values.items():
            if URL_SAFE_VALUE.fullmatch(value) is None:
                raise InvalidInput(
                    f"{name} contains characters not allowed in a URL",
                    code="invalid_provider_input",
                    field=f"inputs.{name}",
                )
        spec = self.spec
        return Endpoints(
            issuer=render_template(spec.issuer, values),
            authorization_url=render_template(spec.authorization_url, values),
            token_url=render_template(spec.token_url, values),
            revocation_url=render_template(spec.revocation_url, values)
            if spec.revocation_url
            else None,
            introspection_url=render_template(spec.introspection_url, values)
            if spec.introspection_url
            else None,
        )

    # --- callback helpers (the connect flow parses the callback itself) ---------------------

    def callback_code(self, params: Mapping[str, str]) -> str | None:
        """The authorization code from the callback (``auth_code`` for TikTok)."""
        return params.get(self.spec.code_param) or None

    def callback_metadata(self, params: Mapping[str, str]) -> dict[str, str]:
        """Values to keep from the callback (e.g. QuickBooks ``realmId`` → ``realm_id``)."""
        return {
            target: str(params[source])
            for source, target in self.spec.callback_metadata.items()
            if params.get(source)
        }

    def verify_callback(
        self,
        params: Mapping[str, str],
        client_secret: Secret,
        inputs: Mapping[str, str] | None = None,
    ) -> None:
        """Provider-signed callback checks (Shopify HMAC); raises ``CallbackVerificationError``."""
        for hook in self._hooks:
            if hook.verify_callback is not None:
                hook.verify_callback(self.key, params, client_secret.reveal(), inputs or {})

    # --- Fivetran mapping ------------------------------------------------------------------

    def _value(
        self,
        source: ValueSource,
        *,
        token_result: TokenResult | None,
        inputs: Mapping[str, str],
        app: AppCredentials | None,
    ) -> Any:
        value: Any = None
        if source.const is not None:
            value = source.const
        elif source.input is not None:
            value = inputs.get(source.input)
            if value is None:
                spec = next((s for s in self.spec.inputs if s.name == source.input), None)
                value = spec.default if spec else None
        elif source.metadata is not None and token_result is not None:
            value = token_result.metadata.get(source.metadata)
        elif source.app is not None and app is not None:
            extra = app.extras.get(source.app)
            value = extra.reveal() if extra is not None else None
        elif source.credential is not None and app is not None:
            value = app.client_id if source.credential == "client_id" else app.client_secret
        elif source.token is not None and token_result is not None:
            value = getattr(token_result, source.token, None)
        if value is None:
            return None
        if source.format:
            value = source.format.format(value=value)
        return value

    def fivetran_parts(
        self,
        token_result: TokenResult,
        app_credentials: AppCredentials,
        end_user_inputs: Mapping[str, Any] | None,
    ) -> FivetranParts:
        """This provider's share of a Fivetran body for ``token_result``: the ``auth`` values
        (:meth:`fivetran_auth`) and the config additions (:meth:`fivetran_config`)."""
        return FivetranParts(
            auth=self.fivetran_auth(token_result, app_credentials),
            config=self.fivetran_config(token_result, end_user_inputs),
        )

    def fivetran_auth(
        self, token_result: TokenResult, app_credentials: AppCredentials
    ) -> AuthValues:
        """What goes into the Fivetran ``auth`` block, as data (the payload builder places
        it): the token fields and app credentials the spec's ``fivetran.auth`` lists, plus
        its ``auth_extra`` paths."""
        wanted = set(self.spec.fivetran.auth)
        extra: dict[str, Any] = {}
        for path, source in self.spec.fivetran.auth_extra.items():
            value = self._value(source, token_result=token_result, inputs={}, app=app_credentials)
            if value is not None:
                extra[path] = value
        with_client = "client_access" in wanted
        return AuthValues(
            client_id=app_credentials.client_id if with_client else None,
            client_secret=app_credentials.client_secret if with_client else None,
            access_token=token_result.access_token if "access_token" in wanted else None,
            refresh_token=token_result.refresh_token if "refresh_token" in wanted else None,
            extra=extra or None,
        )

    def fivetran_config(
        self, token_result: TokenResult | None, end_user_inputs: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Config additions for the Fivetran payload (e.g. Shopify ``shop``, Zendesk domain)."""
        names = {s.name for s in self.spec.inputs}
        given = {k: v for k, v in (end_user_inputs or {}).items() if k in names}
        inputs = self.validate_inputs(given)
        config: dict[str, Any] = {}
        for name, source in self.spec.fivetran.config.items():
            value = self._value(source, token_result=token_result, inputs=inputs, app=None)
            if value is not None:
                config[name] = value
        return config


PLATFORM_END_USER = "_platform"
APP_OWNER = "oauth_app"
APP_SECRET_FIELD = "client_secret"


@dataclass
class AppConfig:
    """Configured OAuth app of one provider.

    ``client_secret`` is held in memory (from settings or a secret file), or is ``None`` when
    it lives in the vault (owner ``oauth_app``, end-user ``_platform``, owner id = provider
    key) and is read per use by :meth:`ProviderRegistry.credentials`.
    """

    client_id: str
    client_secret: Secret | None
    extras: dict[str, Secret] = field(default_factory=dict)
    #: Generated sandbox credentials (not an operator-configured app).
    generated: bool = False


class ProviderRegistry:
    """Every known provider plus the OAuth apps configured for them (``app.state.providers``)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        apps: Mapping[str, AppConfig],
        *,
        vault: Callable[[], Vault] | None = None,
        oauth1: OAuth1Registry | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._apps = dict(apps)
        #: The configured provider of each Fivetran service (the first, in registry order).
        self._by_service: dict[str, Provider] = {}
        for key, provider in self._providers.items():
            if key in self._apps:
                self._by_service.setdefault(provider.fivetran_service, provider)
        self._vault = vault
        #: The OAuth 1.0a providers (X / Twitter), beside the OAuth 2.0 ones.
        self.oauth1 = oauth1 or OAuth1Registry()
        #: RFC 8414 metadata of operator-configured issuers (set by ``start_providers``).
        self.metadata = MetadataCache(allow_http=False)

    async def resolved(self, provider: Provider, http: httpx.AsyncClient) -> Provider:
        """``provider`` as its issuer's metadata describes it (cached discovery)."""
        return await self.metadata.apply(provider, http)

    def bind_vault(self, vault: Callable[[], Vault]) -> None:
        """Where vault-held client secrets are read from (``app.state.vault``, lazily)."""
        self._vault = vault

    def get(self, provider_key: str) -> Provider:
        try:
            return self._providers[provider_key]
        except KeyError:
            raise UnknownProvider(provider_key) from None

    def find(self, provider_key: str) -> Provider | None:
        return self._providers.get(provider_key)

    def all(self) -> list[Provider]:
        return list(self._providers.values())

    def is_configured(self, provider_key: str) -> bool:
        return provider_key in self._apps and provider_key in self._providers

    def configured(self) -> list[Provider]:
        """Providers with an OAuth app (client id + secret), i.e. usable for a connect flow."""
        return [p for k, p in self._providers.items() if k in self._apps]

    def for_service(self, service: str) -> Provider | None:
        """The configured provider for a Fivetran service (``None`` when there is none)."""
        return self._by_service.get(service)

    def app_config(self, provider_key: str) -> AppConfig:
        self.get(provider_key)
        try:
            return self._apps[provider_key]
        except KeyError:
            raise ProviderNotConfigured(provider_key) from None

    async def credentials(self, session: AsyncSession | None, provider_key: str) -> AppCredentials:
        """``(client_id, client_secret, extras)`` of the provider's OAuth app.

        The secret comes from settings / a secret file (in memory), or from the vault (owner
        ``oauth_app``) with ``session`` when the app is configured with
        ``client_secret_in_vault``; a missing vault secret raises ``ProviderNotConfigured``.
        """
        app = self.app_config(provider_key)
        secret = app.client_secret
        if secret is None:
            if self._vault is None or session is None:
                raise ProviderNotConfigured(provider_key)
            secret = await self._vault().get(
                session,
                end_user_id=PLATFORM_END_USER,
                owner_type=APP_OWNER,
                owner_id=provider_key,
                field=APP_SECRET_FIELD,
            )
            if secret is None:
                raise ProviderNotConfigured(provider_key)
        return AppCredentials(app.client_id, secret, dict(app.extras))

    def sandboxed(self) -> list[Provider]:
        """Providers served by the embedded sandbox authorization server."""
        return [p for p in self._providers.values() if p.sandboxed]
