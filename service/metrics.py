"""Prometheus metrics, one registry per app so tests can build many apps in one process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Requests by route and status, latency, batch sizes and queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tagserve_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tagserve_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tagserve_batch_sentences",
            "sentences per model batch",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "tagserve_queue_sentences",
            "sentences waiting for the model",
            ["model"],
            registry=self.registry,
        )
        self.worker_restarts = Counter(
            "tagserve_model_worker_restarts",
            "model worker processes replaced after dying or overrunning the batch timeout",
            ["model"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "tagserve_overload_rejections",
            "requests refused because the queue was full",
            ["model"],
            registry=self.registry,
        )
