"""Per-request context: the request id (echoed in `X-Request-ID`), the access log line, HTTP
metrics, and the last-resort 500 answer, as one pure ASGI middleware (outermost of the app's).

The request id lives in a context variable so problem bodies, responses and log lines carry it
without being passed around.
"""

import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.metrics import Metrics

REQUEST_ID_HEADER = "X-Request-ID"
CLIENT_CLOSED_REQUEST = 499  # (nginx's code) the client went away before the answer: no one to send it to
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_logger = logging.getLogger("service.api.access")
error_logger = logging.getLogger("service.api.errors")


def current_request_id() -> str | None:
    return _request_id.get()


def choose_request_id(incoming: str | None) -> str:
    """The client's id when it is a sane token, else a new one (never echo arbitrary bytes)."""
    if incoming and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def endpoint_of(scope: Scope) -> str:
    """The route template ("/v1/predict"), so metrics do not get one label per URL."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


# () -> (status, headers, body) of the answer to an unexpected exception
ErrorAnswer = Callable[[], tuple[int, dict[str, str], bytes]]


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, error_answer: ErrorAnswer) -> None:
        self.app = app
        self.metrics = metrics
        self.error_answer = error_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = choose_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = _request_id.set(request_id)
        state: dict[str, Any] = {"status": 500, "started": False}
        start = time.perf_counter()
        self.metrics.http_in_flight.inc()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client hung up while its body was being read: not a server error, nothing to answer.
            if not state["started"]:
                state["status"] = CLIENT_CLOSED_REQUEST
        except Exception as error:
            # Logged with its traceback but not its message (it may quote client data).
            error_logger.error(
                "unhandled %s on %s %s",
                type(error).__name__,
                scope.get("method"),
                scope.get("path"),
                extra={
                    "error_type": type(error).__name__,
                    "traceback": "".join(traceback.format_tb(error.__traceback__)),
                },
            )
            if not state["started"]:
                status, headers, body = self.error_answer()
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            seconds = time.perf_counter() - start
            endpoint = endpoint_of(scope)
            self.metrics.http_in_flight.dec()
            self.metrics.observe_request(endpoint, scope.get("method", ""), state["status"], seconds)
            access_logger.info(
                "%s %s %s",
                scope.get("method"),
                scope.get("path"),
                state["status"],
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "endpoint": endpoint,
                    "status": state["status"],
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            _request_id.reset(token)
