"""Prometheus metrics, aggregated over all Gunicorn workers.

Multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``gunicorn.conf.py`` creates one
per server and clears it at start), every worker writes its samples to files there and
``/metrics`` on any worker answers for the whole server; dead workers' gauges are dropped by
the ``child_exit`` hook. Without it (tests, ``chestx serve --dev``) each app counts for itself.
Each app has its own registry, so many apps can live in one test process.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # the *_created series only add noise to scrapes

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The service's metric families, registered in a registry of their own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "chestx_http_requests",
            "HTTP requests by route and status",
            ["method", "endpoint", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "chestx_http_request_duration_seconds",
            "HTTP request latency by route",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "chestx_inference_batch_size",
            "Images per model call (micro-batching)",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "chestx_inference_duration_seconds",
            "Seconds per model call (one batch)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "chestx_predictions", "Predictions by label", ["label"], registry=r
        )
        self.image_errors = Counter(
            "chestx_rejected_uploads",
            "Uploads refused before inference, by HTTP status and "
            "reason (not_a_chest_xray: the input gate)",
            ["status", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "chestx_model_info",
            "The served model (value 1), by name, version and runtime",
            ["name", "version", "runtime"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "chestx_worker_ready",
            "Workers with a loaded model",
            registry=r,
            multiprocess_mode="livesum",
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)

    def set_model(self, name: str, version: str, runtime: str) -> None:
        self.model_info.labels(str(name), str(version), runtime).set(1)
        self.ready.set(1)

    def render(self) -> bytes:
        """The text exposition: all workers' samples in multiprocess mode, else this app's."""
        path = multiprocess_dir()
        if path and os.path.isdir(path):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path)
            return generate_latest(registry)
        return generate_latest(self.registry)
