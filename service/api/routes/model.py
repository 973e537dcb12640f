"""GET /v1/model: the model card of the served model."""

from fastapi import APIRouter, Depends

from cxr.model_card import ModelCard
from service.api.auth import require_api_key
from service.api.deps import RuntimeDep
from service.api.openapi_docs import problem_responses

router = APIRouter(tags=["model"], dependencies=[Depends(require_api_key)])


@router.get(
    "/v1/model",
    response_model=ModelCard,
    summary="The served model's card: labels, input size, thresholds, metrics",
    responses=problem_responses({401: "Missing or invalid API key", 503: "Model loading"}),
)
async def model_card(runtime: RuntimeDep) -> ModelCard:
    return runtime.card
