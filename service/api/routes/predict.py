"""POST /v1/predict: validate, call `prediction.predict`, return the response model, or its FHIR
R4 DiagnosticReport for `Accept: application/fhir+json` or `?format=fhir`."""

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from service.api.auth import require_api_key
from service.api.deps import RuntimeDep, StateDep
from service.api.fhir import FHIR_JSON, diagnostic_report, fhir_json
from service.api.heatmaps import MIN_HEATMAP_SIZE, HeatmapStyle
from service.api.openapi_docs import PREDICT_FHIR_RESPONSE, PREDICT_REQUEST_BODY, problem_responses
from service.api.prediction import predict, refuse_if_full, within_limits
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
    responses={
        **PREDICT_FHIR_RESPONSE,
        **problem_responses(
            {
                400: "Malformed request: bad JSON or base64, missing or extra multipart fields, "
                "broken multipart",
                401: "Missing or invalid API key",
                408: "The body did not arrive within REQUEST_TIMEOUT_SECONDS (the connection is closed)",
                413: "Body over MAX_BODY_BYTES, or image over MAX_PIXELS",
                415: "Not a PNG, JPEG or DICOM image, or an unaccepted request Content-Type",
                422: "Invalid parameters (heatmaps, heatmap_style, heatmap_size), image shape not a "
                "radiograph's, or not a chest X-ray when OOD_MODE=refuse",
                503: "Model loading, overloaded or timed out (see Retry-After)",
            }
        ),
    },
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
    format: Annotated[
        Literal["json", "fhir"] | None,
        Query(
            description="`fhir`: answer a FHIR R4 DiagnosticReport (application/fhir+json), as "
            "`Accept: application/fhir+json` does; `json` (default): this API's own JSON."
        ),
    ] = None,
) -> PredictResponse | Response:
    """The image is decoded by content, checked, preprocessed exactly as in training and run
    with onnxruntime; heatmaps come from the Grad-CAM sidecar, or from the class activation map
    fast path (with a warning) when it is unavailable."""
    refuse_if_full(state)  # at once, before reading the body
    parsed = await read_prediction_request(request, QueryOptions(heatmaps, heatmap_style, heatmap_size))
    outcome = await within_limits(state, lambda: predict(state, runtime, parsed))
    if format == "fhir" or (format is None and wants_fhir(request.headers.get("accept", ""))):
        report = diagnostic_report(outcome.response, runtime.card, outcome.instance)
        return Response(fhir_json(report), media_type=FHIR_JSON)
    return outcome.response


def wants_fhir(accept: str) -> bool:
    """True when the Accept header names application/fhir+json (any parameters) with q > 0."""
    for item in accept.split(","):
        media_type, _, parameters = item.partition(";")
        if media_type.strip().lower() == FHIR_JSON:
            return quality(parameters) > 0
    return False


def quality(parameters: str) -> float:
    """The q of an Accept entry's parameters ("; q=0.5; fhirVersion=4.0"), 1 when absent or invalid."""
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 1.0
    return 1.0
