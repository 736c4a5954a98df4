"""Builds ``app.state.fivetran`` in the lifespan."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis

from app.config import Settings
from app.fivetran.budget import (
    CombinedBudget,
    LocalTokenBucket,
    RateBucket,
    RedisRateBucket,
    RedisWindowBudget,
    RequestBudget,
)
from app.fivetran.client import FivetranClient
from app.fivetran.index import all_services

log = logging.getLogger("pbf.fivetran")


def build_budget(settings: Settings, **kw: Any) -> RequestBudget:
    """The hourly budget, plus the per-second one when ``fivetran.requests_per_second`` > 0;
    Redis-backed (shared by replicas) when ``redis_url`` is set, else in-process."""
    cfg = settings.fivetran
    hourly: RequestBudget
    per_second: RequestBudget | None = None
    burst = cfg.requests_burst or None
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        hourly = RedisWindowBudget(
            redis,
            cfg.hourly_request_budget,
            prefix=cfg.budget_redis_prefix,
            max_wait=cfg.max_retry_after_seconds,
            **kw,
        )
        if cfg.requests_per_second > 0:
            per_second = RedisRateBucket(
                redis,
                cfg.requests_per_second,
                burst,
                prefix=cfg.budget_redis_prefix,
                max_wait=cfg.max_retry_after_seconds,
                **{k: v for k, v in kw.items() if k == "sleep"},
            )
    else:
        hourly = LocalTokenBucket(
            cfg.hourly_request_budget, max_wait=cfg.max_retry_after_seconds, **kw
        )
        if cfg.requests_per_second > 0:
            per_second = RateBucket(
                cfg.requests_per_second, burst, max_wait=cfg.max_retry_after_seconds, **kw
            )
    return hourly if per_second is None else CombinedBudget(hourly, per_second)


def credentials(settings: Settings) -> tuple[str, str]:
    """API key and secret: configured ones, else (sandbox mode) the simulator's."""
    cfg = settings.fivetran
    if cfg.api_key is not None and cfg.api_secret is not None:
        return cfg.api_key.get_secret_value(), cfg.api_secret.get_secret_value()
    if not settings.is_sandbox:
        raise ValueError("PBF_FIVETRAN__API_KEY and PBF_FIVETRAN__API_SECRET must be set.")
    return cfg.sandbox_key, cfg.sandbox_secret.get_secret_value()


def build_fivetran_client(http: httpx.AsyncClient, settings: Settings) -> FivetranClient:
    """The Fivetran client the settings describe, on the shared ``http`` client."""
    key, secret = credentials(settings)
    cfg = settings.fivetran
    return FivetranClient(
        http,
        base_url=settings.fivetran_base_url,
        api_key=key,
        api_secret=secret,
        timeout=cfg.timeout_seconds,
        max_retries=cfg.max_retries,
        backoff_base=cfg.retry_backoff_seconds,
        max_retry_after=cfg.max_retry_after_seconds,
        budget=build_budget(settings),
    )


def start_fivetran(app: FastAPI, settings: Settings) -> FivetranClient:
    """Create the Fivetran client on ``app.state.http`` and store it as ``app.state.fivetran``.

    Returns it so the lifespan can register ``client.aclose`` (closes the Redis budget).
    """
    # Parse the bundled service index now (about a second of CPU, once per process), not
    # inside the first request that needs a source or validates a payload.
    all_services()
    client = build_fivetran_client(app.state.http, settings)
    simulator = getattr(app.state, "fivetran_simulator", None)
    if simulator is not None:
        # Sandbox: finish in-flight webhook deliveries while the http client and DB still exist.
        client.on_close(simulator.webhooks.drain)
    app.state.fivetran = client
    return client
