"""What the sidecar holds while it runs, and the dependencies that hand it to routes."""

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from cxr.model_card import ModelCard
from service.sidecar.errors import NotReadyError
from service.sidecar.settings import Settings
from service.sidecar.worker import TensorFlowWorker

if TYPE_CHECKING:  # the explainer imports TensorFlow, which only the TensorFlow thread may do
    from service.sidecar.explainer import Explainer


@dataclass
class SidecarState:
    settings: Settings
    card: ModelCard
    worker: TensorFlowWorker
    explainer: "Explainer | None" = None
    load_error: str | None = field(default=None)
    # Who this process is: /readyz reports both, so a client (the API) sees the sidecar restart
    # whatever restarted it (service.run, Docker's restart policy, Kubernetes).
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: float = field(default_factory=time.time)  # Unix seconds


def get_state(request: Request) -> SidecarState:
    state: SidecarState = request.app.state.sidecar
    return state


def get_ready_state(request: Request) -> SidecarState:
    state = get_state(request)
    if state.explainer is None:
        raise NotReadyError(state.load_error or "the model is still loading")
    return state


StateDep = Annotated[SidecarState, Depends(get_state)]
ReadyStateDep = Annotated[SidecarState, Depends(get_ready_state)]
