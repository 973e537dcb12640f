"""HTTP routes: thin, they validate, call the explainer on the TensorFlow thread and answer."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.gradcam_protocol import GRADCAM_PATH, GradCamRequest, GradCamResponse, encode_array
from service.sidecar.problems import PROBLEM_JSON, problem
from service.sidecar.state import ReadyStateDep, StateDep
from service.sidecar.validation import decode_input, select_labels

PROBLEM_RESPONSE: dict[str, object] = {"content": {PROBLEM_JSON: {}}}

gradcam_router = APIRouter(tags=["gradcam"])
health_router = APIRouter(tags=["health"])


@gradcam_router.post(
    GRADCAM_PATH,
    response_model=GradCamResponse,
    responses={
        400: {"description": "Malformed body or bad tensor", **PROBLEM_RESPONSE},
        422: {"description": "Unknown label or layer, too many labels", **PROBLEM_RESPONSE},
        503: {"description": "Model not loaded yet, or busy", **PROBLEM_RESPONSE},
    },
)
async def explain(body: GradCamRequest, state: ReadyStateDep) -> GradCamResponse:
    """Grad-CAM of the pre-sigmoid logit, one map in [0, 1] per label at the layer's resolution."""
    assert state.explainer is not None
    explainer = state.explainer
    tensor = decode_input(body, state.card.input_size)
    label_indices = select_labels(body.labels, state.card.labels, state.settings.max_labels_per_request)
    explanation = await state.worker.run(lambda: explainer.explain(tensor, label_indices, body.layer))
    return GradCamResponse(
        layer=explanation.layer,
        gradient_of="logit",
        heatmap_shape=explanation.heatmap_shape,
        heatmaps={label: encode_array(heatmap) for label, heatmap in explanation.heatmaps.items()},
        seconds=round(explanation.seconds, 4),
    )


@health_router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (the model may still be loading)."""
    return {"status": "ok"}


@health_router.get("/readyz", responses={503: {"description": "Model not loaded", **PROBLEM_RESPONSE}})
async def readyz(request: Request, state: StateDep) -> JSONResponse:
    """200 once the model is loaded and traced, 503 before (or if loading failed); both carry this
    process's instance_id and started_at (Unix seconds), which change when the sidecar restarts."""
    instance = {"instance_id": state.instance_id, "started_at": state.started_at}
    if state.explainer is None:
        detail = state.load_error or "the model is still loading"
        return problem(request, 503, "Model not ready", detail, **instance)
    card = state.card
    return JSONResponse(
        {
            "status": "ready",
            **instance,
            "model": card.name,
            "version": card.version,
            "sha256": card.sha256,
            "layer": card.last_conv_layer,
        }
    )
