"""Request body size limit as a pure ASGI middleware: refuse before reading the body.

A declared Content-Length over the limit is answered 413 at once, without reading a byte; a body
without one (chunked) or that lies about its length is counted while it streams in, and the
request fails with 413 as soon as the count passes the limit, so an oversized upload is never
held in memory whole.

With `body_timeout_seconds`, the whole body must also arrive within that time of the request's
start: a client that sends a few bytes and stalls gets 408 (and the connection is closed) instead
of holding the connection, and its request, open forever.
"""

import time

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.problems import Problem, problem_response


def body_too_large(limit: int) -> Problem:
    return Problem(
        413,
        f"the request body is larger than the limit of {limit} bytes",
        slug="body-too-large",
        title="Request body too large",
        headers={"Connection": "close"},
    )


def body_timed_out(seconds: float) -> Problem:
    return Problem(
        408,
        f"the request body did not arrive within {seconds:g} s",
        slug="body-timeout",
        title="Request body timed out",
        headers={"Connection": "close"},
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout_seconds: float | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await problem_response(body_too_large(limit), scope["path"])(scope, receive, send)
            return

        received = 0
        response_started = False
        timeout = self.body_timeout_seconds
        deadline = None if timeout is None else time.monotonic() + timeout
        body_complete = False

        async def counting_receive() -> Message:
            nonlocal received, body_complete
            if deadline is None or body_complete:  # (after the body, receive waits for a disconnect)
                message = await receive()
            else:
                try:
                    with anyio.fail_after(max(deadline - time.monotonic(), 0.0)):
                        message = await receive()
                except TimeoutError:
                    # Raised inside the app's body read, like 413: the app's Problem handler answers.
                    raise body_timed_out(timeout or 0.0) from None
            if message["type"] == "http.request":
                body_complete = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app's body read: the app's Problem handler answers 413.
                    raise body_too_large(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Problem as problem:
            # Only reached when the body was read outside the app's exception handling.
            if response_started or problem.status not in (408, 413):
                raise
            await problem_response(problem, scope["path"])(scope, receive, send)
