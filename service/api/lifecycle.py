"""Start-up and shutdown: the model loads in a worker thread started from the lifespan, so
/healthz and /readyz answer while it loads; a load failure is logged as one line naming the file
and the problem, and `on_load_failure` is called (the server entry point stops with exit 1)."""

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI

from service.api.circuit_breaker import CircuitBreaker
from service.api.model_runtime import ModelLoadError, ModelRuntime, load_model_runtime
from service.api.settings import Settings
from service.api.sidecar_client import SidecarClient, SidecarInstance
from service.api.state import ServiceState

logger = logging.getLogger("service.api.lifecycle")
ModelLoader = Callable[[Settings], ModelRuntime]


def load_from_settings(settings: Settings) -> ModelRuntime:
    # pydicom (and its decoder plugins) would otherwise be imported by the first DICOM request.
    importlib.import_module("cxr.dicom")
    return load_model_runtime(
        settings.model_dir,
        settings.onnx_dir,
        settings.ort_intra_op_threads,
        settings.ort_inter_op_threads,
        precision=settings.model_precision,
        allow_spinning=settings.ort_allow_spinning,
        threads_under_load=settings.ort_threads_under_load,
    )


async def load_model(state: ServiceState, loader: ModelLoader, on_failure: Callable[[], None] | None) -> None:
    try:
        runtime = await anyio.to_thread.run_sync(partial(loader, state.settings), abandon_on_cancel=True)
    except Exception as error:
        state.load_error = (
            str(error) if isinstance(error, ModelLoadError) else f"{type(error).__name__}: {error}"
        )
        logger.error("model not loaded: %s", state.load_error)
        state.load_finished.set()
        if on_failure is not None:
            on_failure()
        return
    card = runtime.card
    state.runtime = runtime
    if state.sidecar is not None:
        state.sidecar.model_sha256 = card.sha256
    state.metrics.model_ready.set(1)
    state.metrics.model_info.labels(card.name, card.version, card.sha256).set(1)
    logger.info(
        "model loaded: %s %s (input %d px, feature map %s, %s)",
        card.name,
        card.version,
        card.input_size,
        tuple(runtime.manifest.feature_map_shape),
        runtime.precision,
    )
    state.load_finished.set()


def note_sidecar_restart(state: ServiceState, instance: SidecarInstance) -> None:
    state.metrics.sidecar_restarts.inc()
    logger.warning(
        "the Grad-CAM sidecar restarted (instance %s, restart %d seen by this API)",
        instance.id,
        state.sidecar.restarts_seen if state.sidecar else 0,
    )


def sidecar_started_at(client: SidecarClient) -> float:
    return client.instance.started_at or 0.0 if client.instance is not None else 0.0


def make_lifespan(
    loader: ModelLoader, on_load_failure: Callable[[], None] | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state: ServiceState = app.state.service
        settings = state.settings
        breaker = CircuitBreaker(settings.gradcam_failure_threshold, settings.gradcam_retry_seconds)
        state.sidecar = SidecarClient(
            settings.sidecar_url,
            settings.gradcam_timeout_seconds,
            breaker,
            None,
            on_restart=partial(note_sidecar_restart, state),
        )
        state.metrics.sidecar_started.set_function(partial(sidecar_started_at, state.sidecar))
        loading = asyncio.create_task(load_model(state, loader, on_load_failure))
        try:
            yield
        finally:
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await state.sidecar.aclose()

    return lifespan
