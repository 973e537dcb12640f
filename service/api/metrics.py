"""Prometheus metrics in a registry owned by one app (not the global one: tests build many apps)."""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "cxr_http_requests",
            "HTTP requests by route, method and status.",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "cxr_http_request_duration_seconds",
            "HTTP request latency by route and method.",
            ["endpoint", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.http_in_flight = Gauge(
            "cxr_http_requests_in_flight", "HTTP requests being served.", registry=registry
        )
        self.inference_seconds = Histogram(
            "cxr_inference_seconds",
            "onnxruntime session.run time per image.",
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.preprocess_seconds = Histogram(
            "cxr_preprocess_seconds",
            "Decoding and preprocessing time per image.",
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.inferences_running = Gauge(
            "cxr_inferences_in_flight", "Predictions holding an inference slot.", registry=registry
        )
        self.inferences_queued = Gauge(
            "cxr_inference_queue_depth", "Predictions waiting for an inference slot.", registry=registry
        )
        self.rejected = Counter(
            "cxr_requests_rejected",
            "Predictions refused with 503 by reason (overloaded, timeout, not_ready).",
            ["reason"],
            registry=registry,
        )
        self.sidecar_failures = Counter(
            "cxr_sidecar_failures",
            "Grad-CAM sidecar calls that failed or were skipped, by reason "
            "(refused, timeout, http_error, bad_response, circuit_open).",
            ["reason"],
            registry=registry,
        )
        self.sidecar_restarts = Counter(
            "cxr_sidecar_restarts",
            "Restarts of the Grad-CAM sidecar this API noticed (the instance_id of its /readyz changed).",
            registry=registry,
        )
        self.sidecar_started = Gauge(
            "cxr_sidecar_started_timestamp_seconds",
            "Start time (Unix seconds) of the sidecar process last seen; 0 before the first.",
            registry=registry,
        )
        self.heatmap_responses = Counter(
            "cxr_heatmap_responses",
            "Predictions answered with heatmaps, by engine.",
            ["engine"],
            registry=registry,
        )
        self.model_ready = Gauge(
            "cxr_model_ready", "1 once the model is loaded and checked.", registry=registry
        )
        self.model_info = Gauge(
            "cxr_model_info", "The served model (value 1).", ["name", "version", "sha256"], registry=registry
        )

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.request_seconds.labels(endpoint, method).observe(seconds)

    def track_admission(self, running: Callable[[], int], queued: Callable[[], int]) -> None:
        self.inferences_running.set_function(lambda: float(running()))
        self.inferences_queued.set_function(lambda: float(queued()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
