"""Prometheus metrics, one registry per app so tests can build several apps."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "latentwire_requests", "HTTP requests", ["route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "latentwire_request_seconds",
            "request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "latentwire_errors", "error responses by code", ["code"], registry=self.registry
        )
        self.batch_size = Histogram(
            "latentwire_batch_size",
            "images (codecs) or tiles (upscalers) per model batch",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "latentwire_batch_seconds", "model time per batch", ["model"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "latentwire_queue_depth", "images waiting", ["model"], registry=self.registry
        )

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)
        self.batch_seconds.labels(model).observe(seconds)
