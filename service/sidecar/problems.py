"""Errors as RFC 9457 problem details (application/problem+json)."""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.sidecar.errors import (
    BadTensorError,
    BusyError,
    NotReadyError,
    TooManyLabelsError,
    UnknownLabelError,
    UnknownLayerError,
)

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_SECONDS = "1"

# error type -> (status, title)
STATUS_OF: dict[type[Exception], tuple[int, str]] = {
    BadTensorError: (400, "Bad input tensor"),
    UnknownLabelError: (422, "Unknown label"),
    TooManyLabelsError: (422, "Too many labels"),
    UnknownLayerError: (422, "Unknown layer"),
    NotReadyError: (503, "Model not ready"),
    BusyError: (503, "Grad-CAM busy"),
}


def problem(request: Request, status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body |= {"instance": request.url.path, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _known_error(request: Request, error: Exception) -> JSONResponse:
    status, title = STATUS_OF[type(error)]
    return problem(request, status, title, str(error))


async def _malformed_request(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors()]
    return problem(request, 400, "Malformed request", "the body is not a valid GradCamRequest", errors=errors)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    return problem(request, error.status_code, str(error.detail), str(error.detail))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s", request.url.path, exc_info=error)
    return problem(request, 500, "Internal error", type(error).__name__)


def add_problem_handlers(app: FastAPI) -> None:
    for error_type in STATUS_OF:
        app.add_exception_handler(error_type, _known_error)
    app.add_exception_handler(RequestValidationError, _malformed_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
