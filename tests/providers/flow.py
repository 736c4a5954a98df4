"""Helpers that drive a real authorization-code flow against the sandbox authorization server.

The app runs with its lifespan; the browser leg goes over ``httpx.ASGITransport`` (no
redirects followed: the code is taken from the ``Location``), and the token leg goes through
the app's own outbound transport — the same path production uses.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
from fastapi import FastAPI

from app.providers import (
    AppCredentials,
    Endpoints,
    Provider,
    TokenResult,
    build_authorization_url,
    exchange_code,
)

BASE_URL = "http://127.0.0.1:8000"


def example_inputs(provider: Provider) -> dict[str, str]:
    """End-user inputs for ``provider`` from its catalog examples (defaults otherwise)."""
    values: dict[str, str] = {}
    for spec in provider.input_specs:
        if spec.examples:
            values[spec.name] = spec.examples[0]
        elif spec.default is not None:
            values[spec.name] = spec.default
        elif spec.enum:
            values[spec.name] = spec.enum[0]
    return values


class RecordingTransport(httpx.AsyncBaseTransport):
    """Wraps a transport and keeps every request (method, url, headers, body)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def bodies(self) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in self.requests]


@dataclass
class Authorized:
    """One completed authorize leg."""

    provider: Provider
    credentials: AppCredentials
    endpoints: Endpoints
    verifier: str
    state: str
    redirect_uri: str
    inputs: dict[str, str] | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.provider.callback_code(self.params)


class Harness:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.registry = app.state.providers
        self.recorder = RecordingTransport(app.state.outbound_transport)

    def redirect_uri(self, key: str) -> str:
        return f"{BASE_URL}/oauth/callback/{key}"

    async def authorize(
        self,
        key: str,
        *,
        login_hint: str | None = "auto",
        inputs: dict[str, str] | None = None,
        scopes: list[str] | None = None,
    ) -> Authorized:
        provider = self.registry.get(key)
        credentials = await self.registry.credentials(None, key)
        inputs = inputs if inputs is not None else (example_inputs(provider) or None)
        endpoints = provider.endpoints(inputs)
        verifier = secrets.token_urlsafe(64)
        state = secrets.token_urlsafe(32)
        url = build_authorization_url(
            provider,
            client_id=credentials.client_id,
            state=state,
            code_verifier=verifier,
            redirect_uri=self.redirect_uri(key),
            inputs=inputs,
            scopes=scopes,
            login_hint=login_hint,
        )
        response = await self.client.get(url)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        assert location.startswith(self.redirect_uri(key) + "?")
        params = dict(parse_qsl(urlsplit(location).query))
        return Authorized(
            provider,
            credentials,
            endpoints,
            verifier,
            state,
            self.redirect_uri(key),
            inputs,
            params,
        )

    async def exchange(self, auth: Authorized, **overrides: Any) -> TokenResult:
        kwargs: dict[str, Any] = {
            "code": auth.code,
            "code_verifier": auth.verifier,
            "redirect_uri": auth.redirect_uri,
            "token_endpoint": auth.endpoints.token_url,
            "credentials": auth.credentials,
            "issuer": auth.endpoints.issuer,
            "transport": self.recorder,
            "callback_params": auth.params,
        }
        kwargs.update(overrides)
        provider = kwargs.pop("provider", auth.provider)
        return await exchange_code(provider, **kwargs)

    async def connect(self, key: str, **kw: Any) -> tuple[Authorized, TokenResult]:
        auth = await self.authorize(key, **kw)
        return auth, await self.exchange(auth)

    async def misbehave(self, key: str, kind: str, count: int = 1) -> None:
        r = await self.client.post(
            "/sandbox/oauth/_control/misbehave",
            json={"provider_key": key, "kind": kind, "count": count},
        )
        assert r.status_code == 200, r.text

    async def token_requests(self) -> list[dict[str, str]]:
        r = await self.client.get("/sandbox/oauth/_control/token-requests")
        return list(r.json()["items"])

    async def introspect(self, key: str, token: str) -> dict[str, Any]:
        import base64
        from urllib.parse import quote_plus

        creds = await self.registry.credentials(None, key)
        basic = base64.b64encode(
            f"{quote_plus(creds.client_id)}:{quote_plus(creds.client_secret.reveal())}".encode()
        ).decode()
        r = await self.client.post(
            f"/sandbox/oauth/{key}/introspect",
            data={"token": token},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())
