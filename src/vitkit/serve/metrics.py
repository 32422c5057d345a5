"""The server's Prometheus metrics (prometheus-client): in a registry of their own, or, with --workers (the
PROMETHEUS_MULTIPROC_DIR variable set), in prometheus-client's per-process files that /metrics sums over every
worker."""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServeMetrics:
    """Requests by endpoint and status, request latency, images per forward, queue depth, workers ready."""

    def __init__(self, max_batch_size: int) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_VARIABLE))
        self.registry = CollectorRegistry()
        self.requests = Counter("vitkit_requests", "HTTP requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("vitkit_request_latency_seconds", "Time from request to response, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        sizes = sorted({min(2 ** i, max_batch_size) for i in range(max_batch_size.bit_length() + 1)})
        self.batch_size = Histogram("vitkit_batch_size", "Images per forward pass of the dynamic batcher",
                                    buckets=sizes, registry=self.registry)
        self.queue_depth = Gauge("vitkit_queue_depth", "Images waiting for a batch (summed over live workers)",
                                 multiprocess_mode="livesum", registry=self.registry)
        self.ready = Gauge("vitkit_worker_ready", "1 per worker process whose model is loaded and warm",
                           multiprocess_mode="liveall", registry=self.registry)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def close(self) -> None:
        """A stopping worker takes its live gauges (queue depth, ready) out of the sums."""
        self.ready.set(0)
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())

    def exposition(self) -> tuple[bytes, str]:
        """The text format body and its content type; across all workers in multiprocess mode."""
        registry = self.registry
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
