"""The Open Inference Protocol (KServe v2 / Triton HTTP) over the one served model.

Thin endpoints: translate HTTP into the data plane's calls (inference_protocol) and back. Health is
public, as /healthz and /readyz are; metadata and inference need an API key, as /v1 does. Errors
are {"error": detail} (problems.py answers so under /v2).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from service.api.auth import require_api_key
from service.api.deps import RuntimeDep, StateDep
from service.api.inference_protocol import HEADER_LENGTH, check_model, decode_request, infer, model_metadata
from service.api.prediction import refuse_if_full, within_limits
from service.api.problems import Problem
from service.api.v2_datamodels import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadataResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
)

SERVER_NAME = "chest-xray-service"
EXTENSIONS = ["binary_tensor_data"]
ModelName = Annotated[str, Path(description="The served model's name (GET /v2/models/{model_name}).")]
ModelVersion = Annotated[str, Path(description="The served model's version.")]


def errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse, "description": text} for status, text in descriptions.items()}


INFER_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An $inference_request (JSON), or with the `Inference-Header-Content-Length` "
        "header that many bytes of it followed by the inputs' binary data (binary tensor data "
        "extension). One input: `image` (BYTES [N]: PNG, JPEG or DICOM files; base64 strings in "
        "JSON) or `input` (FP32 [N, size, size, 3], preprocessed), N from 1 to 16.",
        "content": {
            "application/json": {
                "schema": InferenceRequest.model_json_schema(),
                "example": {
                    "inputs": [
                        {"name": "image", "shape": [1], "datatype": "BYTES", "data": ["iVBORw0KGgo..."]}
                    ],
                    "outputs": [{"name": "probabilities"}],
                },
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}

health = APIRouter(tags=["open inference protocol"])
router = APIRouter(tags=["open inference protocol"], dependencies=[Depends(require_api_key)])


@health.get("/v2/health/live", response_model=ServerLiveResponse, summary="Liveness")
async def live() -> ServerLiveResponse:
    return ServerLiveResponse(live=True)


@health.get(
    "/v2/health/ready",
    response_model=ServerReadyResponse,
    summary="Readiness: 200 once the model is loaded, else 503",
    responses={503: {"model": ServerReadyResponse, "description": "Model loading or failed"}},
)
async def ready(state: StateDep) -> JSONResponse:
    is_ready = state.runtime is not None
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get(
    "/v2",
    response_model=ServerMetadataResponse,
    summary="Server metadata",
    responses=errors({401: "Missing or invalid API key"}),
)
async def server_metadata(request: Request) -> ServerMetadataResponse:
    return ServerMetadataResponse(name=SERVER_NAME, version=request.app.version, extensions=EXTENSIONS)


@router.get(
    "/v2/models/{model_name}",
    response_model=ModelMetadataResponse,
    summary="Model metadata: inputs and outputs",
    responses=errors({401: "Missing or invalid API key", 404: "Unknown model", 503: "Model loading"}),
)
async def metadata(runtime: RuntimeDep, model_name: ModelName) -> ModelMetadataResponse:
    check_model(runtime, model_name)
    return model_metadata(runtime)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadataResponse,
    summary="Model metadata of one version",
    responses=errors(
        {401: "Missing or invalid API key", 404: "Unknown model or version", 503: "Model loading"}
    ),
)
async def version_metadata(
    runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
) -> ModelMetadataResponse:
    check_model(runtime, model_name, model_version)
    return model_metadata(runtime)


@router.get(
    "/v2/models/{model_name}/ready",
    response_model=ModelReadyResponse,
    summary="Model readiness",
    responses=errors({401: "Missing or invalid API key", 404: "Unknown model", 503: "Model loading"}),
)
async def model_ready(runtime: RuntimeDep, model_name: ModelName) -> ModelReadyResponse:
    check_model(runtime, model_name)
    return ModelReadyResponse(name=model_name, ready=True)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReadyResponse,
    summary="Model readiness of one version",
    responses=errors(
        {401: "Missing or invalid API key", 404: "Unknown model or version", 503: "Model loading"}
    ),
)
async def version_ready(
    runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
) -> ModelReadyResponse:
    check_model(runtime, model_name, model_version)
    return ModelReadyResponse(name=model_name, ready=True)


INFER_ERRORS = errors(
    {
        400: "Malformed request, unknown input or output, wrong datatype or shape, not an image",
        401: "Missing or invalid API key",
        404: "Unknown model or version",
        408: "The body did not arrive within REQUEST_TIMEOUT_SECONDS",
        413: "Body over MAX_BODY_BYTES, or an image over MAX_PIXELS",
        503: "Model loading, overloaded or timed out (see Retry-After)",
    }
)


@router.post(
    "/v2/models/{model_name}/infer",
    response_model=InferenceResponse,
    summary="Inference: probabilities [N, 14] (and the feature map on request)",
    openapi_extra=INFER_BODY,
    responses=INFER_ERRORS,
)
async def model_infer(
    request: Request, state: StateDep, runtime: RuntimeDep, model_name: ModelName
) -> Response:
    return await _infer(request, state, runtime, model_name, None)


@router.post(
    "/v2/models/{model_name}/versions/{model_version}/infer",
    response_model=InferenceResponse,
    summary="Inference on one version",
    openapi_extra=INFER_BODY,
    responses=INFER_ERRORS,
)
async def version_infer(
    request: Request, state: StateDep, runtime: RuntimeDep, model_name: ModelName, model_version: ModelVersion
) -> Response:
    return await _infer(request, state, runtime, model_name, model_version)


async def _infer(
    request: Request, state: StateDep, runtime: RuntimeDep, model_name: str, model_version: str | None
) -> Response:
    check_model(runtime, model_name, model_version)
    refuse_if_full(state)  # at once, before reading the body
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise Problem(400, "compressed request bodies (Content-Encoding) are not supported")
    decoded = decode_request(await request.body(), request.headers.get(HEADER_LENGTH))
    answer = await within_limits(state, lambda: infer(state, runtime, decoded))
    if answer.header_length is None:
        return Response(answer.body, media_type="application/json")
    return Response(
        answer.body,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(answer.header_length)},
    )
