"""POST /v1/predict: validate, call `prediction.predict`, return the response model."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request

from service.api.admission import Overloaded
from service.api.auth import require_api_key
from service.api.deps import RuntimeDep, StateDep
from service.api.heatmaps import MIN_HEATMAP_SIZE, HeatmapStyle
from service.api.openapi_docs import PREDICT_REQUEST_BODY, problem_responses
from service.api.prediction import predict
from service.api.problems import Problem, overloaded
from service.api.request_parsing import QueryOptions, read_prediction_request
from service.api.schemas import PredictResponse

router = APIRouter(tags=["prediction"], dependencies=[Depends(require_api_key)])

HEATMAPS_DESCRIPTION = (
    "Which heatmaps to return: `none` (default), `all`, `top:K` (the K most probable labels) or a "
    "comma-separated list of labels, e.g. `Effusion,Cardiomegaly`."
)


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    summary="Classify a chest X-ray (14 findings) with optional heatmaps",
    openapi_extra=PREDICT_REQUEST_BODY,
    responses=problem_responses(
        {
            400: "Malformed request: bad JSON or base64, missing or extra multipart fields, broken multipart",
            401: "Missing or invalid API key",
            408: "The body did not arrive within REQUEST_TIMEOUT_SECONDS (the connection is closed)",
            413: "Body over MAX_BODY_BYTES, or image over MAX_PIXELS",
            415: "Not a PNG, JPEG or DICOM image, or an unaccepted request Content-Type",
            422: "Invalid parameters (heatmaps, heatmap_style, heatmap_size), image shape not a "
            "radiograph's, or not a chest X-ray when OOD_MODE=refuse",
            503: "Model loading, overloaded or timed out (see Retry-After)",
        }
    ),
)
async def predict_endpoint(
    request: Request,
    state: StateDep,
    runtime: RuntimeDep,
    heatmaps: Annotated[str | None, Query(description=HEATMAPS_DESCRIPTION, examples=["top:3"])] = None,
    heatmap_style: Annotated[
        HeatmapStyle | None,
        Query(
            description="`overlay` (default): colour map over the X-ray; `mask`: colour map only, "
            "transparent where there is no heat."
        ),
    ] = None,
    heatmap_size: Annotated[
        int | None,
        Query(
            ge=MIN_HEATMAP_SIZE,
            le=1024,
            description="Heatmap side in pixels; default the model's input "
            "size, at most the image's own size (and HEATMAP_MAX_SIZE).",
        ),
    ] = None,
) -> PredictResponse:
    """The image is decoded by content, checked, preprocessed exactly as in training and run
    with onnxruntime; heatmaps come from the Grad-CAM sidecar, or from the class activation map
    fast path (with a warning) when it is unavailable."""
    try:
        state.admission.check()  # refuse at once, before reading the body, when full
        parsed = await read_prediction_request(request, QueryOptions(heatmaps, heatmap_style, heatmap_size))
        with anyio.fail_after(state.settings.request_timeout_seconds):
            return await predict(state, runtime, parsed)
    except Overloaded as error:
        state.metrics.rejected.labels("overloaded").inc()
        raise overloaded(str(error)) from None
    except TimeoutError:
        state.metrics.rejected.labels("timeout").inc()
        raise Problem(
            503,
            f"the prediction took longer than {state.settings.request_timeout_seconds:g} s",
            slug="timeout",
            title="Timed out",
            headers={"Retry-After": "5"},
        ) from None
