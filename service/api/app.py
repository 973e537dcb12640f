"""Assemble the API: state, middleware, error handlers, routers. Nothing else happens here."""

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from service.api.lifecycle import ModelLoader, load_from_settings, make_lifespan
from service.api.limits import BodyLimitMiddleware
from service.api.openapi_docs import install_openapi
from service.api.problems import install_problem_handlers, internal_error_answer
from service.api.request_context import REQUEST_ID_HEADER, RequestContextMiddleware
from service.api.routes import docs, health, metrics, model, page, predict, v2
from service.api.security_headers import SecurityHeadersMiddleware
from service.api.settings import Settings, get_settings
from service.api.state import ServiceState

DESCRIPTION = """\
Chest X-ray classification (14 ChestX-ray14 findings) with DenseNet121 served by onnxruntime,
and Grad-CAM heatmaps from a TensorFlow sidecar (class activation maps computed here when it is
unavailable).

**Not a medical device**: an aid for research and triage, not a diagnosis.

Authentication: when the server has API keys, `/v1/*` needs `X-API-Key: <key>` or
`Authorization: Bearer <key>`. Errors are `application/problem+json`
(`type`, `title`, `status`, `detail`, `request_id`). Every response has an `X-Request-ID` header.

`/v1/predict` also answers FHIR R4 (a DiagnosticReport) for `Accept: application/fhir+json` or
`?format=fhir`. `/v2/*` is the Open Inference Protocol (KServe v2 / Triton HTTP, with the binary
tensor data extension): same keys and limits, errors as `{"error": "..."}`.
"""
TAGS = [
    {"name": "prediction", "description": "Classify a radiograph."},
    {"name": "model", "description": "What model is served."},
    {"name": "operations", "description": "Health, readiness and metrics."},
    {
        "name": "open inference protocol",
        "description": "KServe v2 / Triton HTTP: health, metadata, inference (JSON or binary tensors).",
    },
]


def create_app(
    settings: Settings | None = None,
    *,
    loader: ModelLoader = load_from_settings,
    on_load_failure: Callable[[], None] | None = None,
) -> FastAPI:
    settings = settings if settings is not None else get_settings()
    state = ServiceState.create(settings)
    middleware = [
        Middleware(RequestContextMiddleware, metrics=state.metrics, error_answer=internal_error_answer),
        Middleware(SecurityHeadersMiddleware),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "X-API-Key", REQUEST_ID_HEADER],
                expose_headers=[REQUEST_ID_HEADER, "Retry-After"],
                max_age=600,
            )
        )
    middleware.append(
        Middleware(
            BodyLimitMiddleware,
            max_body_bytes=settings.max_body_bytes,
            body_timeout_seconds=settings.request_timeout_seconds,
        )
    )
    app = FastAPI(
        title="Chest X-ray diagnosis API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=make_lifespan(loader, on_load_failure),
        middleware=middleware,
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # /docs and /redoc are routes.docs: their files served from here, no CDN
        redoc_url=None,
    )
    app.state.service = state
    install_problem_handlers(app)

    # Routes carry their full paths (the metrics label them by template); /v1/* routers
    # require an API key themselves.
    app.include_router(predict.router)
    app.include_router(model.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(page.router)
    app.include_router(docs.router)
    app.include_router(v2.health)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=page.STATIC_DIR, check_dir=False), name="static")
    app.mount(docs.ASSETS_PATH, StaticFiles(directory=docs.ASSETS_DIR), name="docs-static")
    install_openapi(app)
    return app
