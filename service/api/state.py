"""What one app instance holds: settings, metrics, admission, and (once loaded) the model."""

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import anyio

from service.api.admission import Admission
from service.api.metrics import Metrics
from service.api.model_runtime import ModelRuntime
from service.api.settings import Settings
from service.api.sidecar_client import SidecarClient


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    admission: Admission
    render_limiter: anyio.CapacityLimiter
    runtime: ModelRuntime | None = None
    sidecar: SidecarClient | None = None
    load_error: str | None = None
    # Set once loading ends, either way (threading: tests and the server wait on it from any thread).
    load_finished: threading.Event = field(default_factory=threading.Event)
    # One thread for the part of a lone request that can run beside it (the out-of-distribution guard).
    side_thread: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="side")
    )

    @classmethod
    def create(cls, settings: Settings) -> "ServiceState":
        metrics = Metrics()
        admission = Admission(settings.max_concurrent_inferences, settings.max_queued_requests)
        metrics.track_admission(lambda: admission.running, lambda: admission.queued)
        return cls(settings, metrics, admission, anyio.CapacityLimiter(settings.max_concurrent_inferences))

    @property
    def model_state(self) -> str:
        if self.runtime is not None:
            return "ready"
        return "failed" if self.load_error else "loading"
