"""The sidecar's FastAPI application: assembled here, loaded in the lifespan."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from cxr.model_card import load_model_card, verify_weights
from service.sidecar.problems import add_problem_handlers
from service.sidecar.routes import gradcam_router, health_router
from service.sidecar.settings import Settings, get_settings
from service.sidecar.state import SidecarState
from service.sidecar.worker import TensorFlowWorker

if TYPE_CHECKING:  # imports TensorFlow: only the TensorFlow thread imports it at run time
    from service.sidecar.explainer import Explainer

logger = logging.getLogger(__name__)


async def load_explainer(state: SidecarState, weights: Path, on_failure: Callable[[], None] | None) -> None:
    """Import TensorFlow and load the model on the TensorFlow thread; /readyz turns 200 when done."""
    settings = state.settings

    def load() -> "Explainer":
        from service.sidecar.explainer import Explainer  # imports TensorFlow (10-20 s)

        return Explainer.load(state.card, weights, settings.tf_intra_op_threads, settings.tf_inter_op_threads)

    try:
        state.explainer = await state.worker.load(load)
    except Exception as error:
        logger.exception("loading %s failed", weights)
        state.load_error = f"loading the model failed: {type(error).__name__}: {error}"
        if on_failure is not None:
            on_failure()


def create_app(
    settings: Settings | None = None, on_load_failure: Callable[[], None] | None = None
) -> FastAPI:
    """The app; `on_load_failure` runs if the model cannot be loaded (the entry point stops the server)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        card = load_model_card(settings.model_dir)
        weights = verify_weights(card, settings.model_dir)  # a wrong file fails start-up at once
        state = SidecarState(settings, card, TensorFlowWorker(settings.max_pending_requests))
        app.state.sidecar = state
        loading = asyncio.create_task(load_explainer(state, weights, on_load_failure))
        try:
            yield
        finally:
            loading.cancel()
            state.worker.shutdown()

    # An internal service: its schema stays at /openapi.json, but no docs pages, which would
    # load Swagger UI from a CDN that offline hospital networks cannot reach.
    app = FastAPI(
        title="CXR Grad-CAM sidecar", version="1.0.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    add_problem_handlers(app)
    app.include_router(gradcam_router)
    app.include_router(health_router)
    return app
