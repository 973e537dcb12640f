"""GET /healthz (the process answers) and GET /readyz (model loaded; sidecar reported)."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.api.deps import StateDep
from service.api.openapi_docs import problem_responses
from service.api.problems import PROBLEM_JSON, problem_body
from service.api.schemas import ModelReadiness, Readiness, SidecarReadiness
from service.api.state import ServiceState

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers (the model may still be loading)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: 200 once the model is loaded (sidecar reported; down = degraded, still ready)",
    responses=problem_responses(
        {503: "Model loading or failed to load (body also carries the readiness fields)"}
    ),
)
async def readyz(state: StateDep) -> JSONResponse:
    readiness = await readiness_of(state)
    body: dict[str, Any] = readiness.model_dump(mode="json")
    if readiness.ready:
        return JSONResponse(body)
    detail = "the model is still loading" if readiness.state == "loading" else "the model failed to load"
    problem = problem_body(503, "not-ready", "Not ready", detail, **body)
    return JSONResponse(problem, status_code=503, media_type=PROBLEM_JSON, headers={"Retry-After": "5"})


async def readiness_of(state: ServiceState) -> Readiness:
    runtime = state.runtime
    model = ModelReadiness(state=state.model_state, error=state.load_error)  # type: ignore[arg-type]
    if runtime is not None:
        card = runtime.card
        model = ModelReadiness(
            state="ready",
            name=card.name,
            version=card.version,
            sha256=card.sha256,
            precision=runtime.precision,
        )
    sidecar = None
    if state.sidecar is not None:
        client = state.sidecar
        status = await client.status()
        sidecar = SidecarReadiness(
            url=client.base_url,
            reachable=status.reachable,
            ready=status.ready,
            same_model=status.same_model,
            circuit=client.breaker.state.value,
            detail=status.detail,
            instance_id=client.instance.id if client.instance else None,
            started_at=client.instance.started_at if client.instance else None,
            restarts_seen=client.restarts_seen,
        )
    if runtime is None:
        overall = "failed" if state.load_error else "loading"
    else:
        usable = sidecar is not None and sidecar.ready and sidecar.same_model is True
        overall = "ready" if usable else "degraded"
    return Readiness(ready=runtime is not None, state=overall, model=model, sidecar=sidecar)  # type: ignore[arg-type]
