"""Prometheus metrics of one app, in a registry of its own.

A per-app :class:`~prometheus_client.CollectorRegistry` (not the global one) lets tests and
benchmarks build many apps in one process without "duplicated timeseries" errors. With several
uvicorn workers each worker exposes its own numbers; the scraper tells them apart by instance.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)

# Recommendations take well under a millisecond to score; the tail is set by the store round trip.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
)  # fmt: skip

UNMATCHED_ROUTE = "<unmatched>"


class ApiMetrics:
    """Every metric the API exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.request_seconds = Histogram(
            "personalize_http_request_duration_seconds",
            "Request latency by route template, method and status code.",
            ("route", "method", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "personalize_events",
            "Events received, by type and whether they were new or already seen (duplicate).",
            ("type", "result"),
            registry=r,
        )
        self.recommendations = Counter(
            "personalize_recommendations",
            "Recommendation lists served, by strategy and the customer's value segment ('' when "
            "the visitor is not a known customer).",
            ("strategy", "segment"),
            registry=r,
        )
        self.unknown_item_events = Counter(
            "personalize_unknown_item_events",
            "Events stored for items the serving model does not know (newer than the model).",
            registry=r,
        )
        self.store_errors = Counter(
            "personalize_store_errors",
            "Calls to the profile store (Redis) that failed, by operation.",
            ("operation",),
            registry=r,
        )
        self.degraded_responses = Counter(
            "personalize_degraded_responses",
            "Responses answered without the profile store (model and popularity only), by route.",
            ("route",),
            registry=r,
        )
        self.model = Info("personalize_model", "The model version being served.", registry=r)
        self.model_reloads = Counter(
            "personalize_model_reloads",
            "Model reload attempts by outcome (reloaded, unchanged, failed).",
            ("outcome",),
            registry=r,
        )

    def set_model_version(self, version: str | None) -> None:
        self.model.info({"version": version or ""})

    def render(self) -> bytes:
        return generate_latest(self.registry)
