"""Prometheus metrics of the events domain (registered on the app's own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class EventsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fanned_out = Counter(
            "pbf_events_emitted_total",
            "Outbound events handed to the delivery worker, by type.",
            ["type"],
            registry=registry,
        )
        self.deliveries = Counter(
            "pbf_event_delivery_attempts_total",
            "Outbound delivery attempts by endpoint and outcome "
            "(delivered, retrying, dead, lease_lost).",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.webhooks = Counter(
            "pbf_fivetran_webhooks_total",
            "Inbound Fivetran webhooks by event and outcome (rejected = bad signature).",
            ["event", "outcome"],
            registry=registry,
        )
