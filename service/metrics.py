"""Prometheus metrics, one registry per app so tests can build many apps in one process.

With several HTTP workers (``tagserve serve --workers N``) every process writes its samples
to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, chosen by
that variable before the first metric exists), and ``/metrics`` in any worker reads them
all: the counts are the server's, never one worker's.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Requests by route and status, latency, batch sizes and queue depth."""

    def __init__(self) -> None:
        directory = os.environ.get(MULTIPROCESS_VARIABLE)
        self.multiprocess = bool(directory)
        # What /metrics reads: this process's metrics, or every process's files.
        self.registry = CollectorRegistry()
        if directory:
            MultiProcessCollector(self.registry, directory)
        own = None if directory else self.registry
        self._queues: dict[str, Callable[[], float]] = {}
        self.requests = Counter(
            "tagserve_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "tagserve_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=own,
        )
        self.batch_size = Histogram(
            "tagserve_batch_sentences",
            "sentences per model batch",
            ["model"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=own,
        )
        self.queue_depth = Gauge(
            "tagserve_queue_sentences",
            "sentences waiting for the model",
            ["model"],
            multiprocess_mode="livesum",
            registry=own,
        )
        self.worker_restarts = Counter(
            "tagserve_model_worker_restarts",
            "model worker processes replaced after dying or overrunning the batch timeout",
            ["model"],
            registry=own,
        )
        self.http_worker_restarts = Counter(
            "tagserve_http_worker_restarts",
            "HTTP worker processes replaced after dying or after their event loop went silent",
            registry=own,
        )
        self.rejected = Counter(
            "tagserve_overload_rejections",
            "requests refused because the queue was full",
            ["model"],
            registry=own,
        )

    def track_queue(self, model: str, waiting: Callable[[], float]) -> None:
        """Report ``waiting()`` as the model's queue depth: read at scrape time in one
        process; with several, written every half second (a scrape reads files)."""
        if not self.multiprocess:
            self.queue_depth.labels(model=model).set_function(waiting)
            return
        self._queues[model] = waiting
        if len(self._queues) == 1:
            threading.Thread(target=self._write_queues, name="queue-gauge", daemon=True).start()

    def _write_queues(self) -> None:
        while True:
            for model, waiting in list(self._queues.items()):
                self.queue_depth.labels(model=model).set(waiting())
            time.sleep(0.5)
