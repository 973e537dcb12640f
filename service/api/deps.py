"""Dependencies of the routes, as Annotated aliases.

They are `async def` although they never await: FastAPI runs a plain `def` dependency in a worker
thread, a thread hop per dependency per request for a lookup that takes microseconds.
"""

from typing import Annotated

from fastapi import Depends, Request

from service.api.admission import Admission
from service.api.metrics import Metrics
from service.api.model_runtime import ModelRuntime
from service.api.problems import not_ready
from service.api.settings import Settings
from service.api.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_app_settings(state: StateDep) -> Settings:
    # From the app's state, not a dependency override: with any override in place FastAPI
    # re-inspects every dependency's signature on every request.
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_runtime(state: StateDep) -> ModelRuntime:
    """The loaded model, or 503 + Retry-After while it loads."""
    if state.runtime is None:
        state.metrics.rejected.labels("not_ready").inc()
        raise not_ready(
            "the model is still loading" if state.load_error is None else "the model failed to load"
        )
    return state.runtime


RuntimeDep = Annotated[ModelRuntime, Depends(get_runtime)]


async def get_metrics(state: StateDep) -> Metrics:
    return state.metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_admission(state: StateDep) -> Admission:
    return state.admission


AdmissionDep = Annotated[Admission, Depends(get_admission)]
