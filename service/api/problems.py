"""Errors as RFC 9457 `application/problem+json`: {type, title, status, detail, request_id}.

Code anywhere in the API raises `Problem` (or a library error mapped in `IMAGE_ERRORS`); the
handlers installed by `install_problem_handlers` turn it, FastAPI's validation errors and
Starlette's HTTP exceptions into one response shape. Under /v2 (the Open Inference Protocol) the
same errors are answered in that protocol's shape, {"error": detail}, with the same status.
Anything else is a bug: the request-context middleware logs its traceback (never its message,
which may quote client data) and answers `internal_error_answer()`.
"""

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxr.imaging import (
    CorruptImageError,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from service.api.heatmaps import HeatmapSpecError
from service.api.request_context import current_request_id

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:cxr:problem:"
INFERENCE_PROTOCOL_PREFIX = "/v2"

# status -> (type slug, title) used when a Problem does not name its own.
_STANDARD: dict[int, tuple[str, str]] = {
    400: ("malformed-request", "Malformed request"),
    401: ("unauthorized", "Missing or invalid API key"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-parameters", "Invalid parameters"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "Service unavailable"),
}


class Problem(Exception):
    """An error answered to the client as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        default_slug, default_title = _STANDARD.get(status, ("error", "Error"))
        self.status = status
        self.detail = detail
        self.slug = slug or default_slug
        self.title = title or default_title
        self.headers = headers or {}
        self.extra = extra or {}


def not_ready(detail: str, retry_after: int = 5) -> Problem:
    return Problem(
        503, detail, slug="not-ready", title="Not ready", headers={"Retry-After": str(retry_after)}
    )


def overloaded(detail: str, retry_after: int = 1) -> Problem:
    return Problem(
        503, detail, slug="overloaded", title="Overloaded", headers={"Retry-After": str(retry_after)}
    )


# Image decoding errors (cxr.imaging) -> (status, slug, title).
IMAGE_ERRORS: dict[type[ImageError], tuple[int, str, str]] = {
    UnsupportedImageError: (415, "unsupported-image", "Not a supported image"),
    CorruptImageError: (415, "corrupt-image", "Image cannot be decoded"),
    ImageTooLargeError: (413, "image-too-large", "Image has too many pixels"),
    ImageShapeError: (422, "image-shape", "Image shape is not a radiograph's"),
}


def problem_from_image_error(error: ImageError) -> Problem:
    for error_type, (status, slug, title) in IMAGE_ERRORS.items():
        if isinstance(error, error_type):
            return Problem(status, str(error), slug=slug, title=title)
    return Problem(415, str(error), slug="unsupported-image", title="Not a supported image")


def problem_body(status: int, slug: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": TYPE_PREFIX + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": current_request_id(),
        **extra,
    }


def speaks_inference_protocol(path: str) -> bool:
    return path == INFERENCE_PROTOCOL_PREFIX or path.startswith(INFERENCE_PROTOCOL_PREFIX + "/")


def problem_response(problem: Problem, path: str = "") -> JSONResponse:
    """The problem+json answer, or {"error": detail} for a request to `path` under /v2."""
    if speaks_inference_protocol(path):
        return JSONResponse({"error": problem.detail}, status_code=problem.status, headers=problem.headers)
    body = problem_body(problem.status, problem.slug, problem.title, problem.detail, **problem.extra)
    return JSONResponse(body, status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


def describe_validation_errors(errors: list[Any]) -> str:
    """'query.heatmap_size: Input should be a valid integer; ...' without echoing input values."""
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _handle_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(exc, request.url.path)


async def _handle_image_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageError)
    return problem_response(problem_from_image_error(exc), request.url.path)


async def _handle_heatmap_spec(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(
        Problem(422, str(exc), slug="invalid-heatmap-parameters", title="Invalid heatmap parameters"),
        request.url.path,
    )


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status = 400 if speaks_inference_protocol(request.url.path) else 422  # the protocol's 400
    return problem_response(Problem(status, describe_validation_errors(list(exc.errors()))), request.url.path)


async def _handle_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _STANDARD.get(exc.status_code, ("", "Error"))[1]
    return problem_response(
        Problem(exc.status_code, detail, headers=dict(exc.headers or {})), request.url.path
    )


def internal_error_answer() -> tuple[int, dict[str, str], bytes]:
    """The 500 answer to a bug (sent by the request-context middleware, which logs it)."""
    body = problem_body(
        500, "internal-error", "Internal server error", "the server failed to answer; it has been logged"
    )
    return 500, {"Content-Type": PROBLEM_JSON}, json.dumps(body).encode()


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _handle_problem)
    app.add_exception_handler(ImageError, _handle_image_error)
    app.add_exception_handler(HeatmapSpecError, _handle_heatmap_spec)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)
