"""Request body size limit as a pure ASGI middleware: refuse before reading the body.

A declared Content-Length over the limit is answered 413 at once, without reading a byte; a body
without one (chunked) or that lies about its length is counted while it streams in, and the
request fails with 413 as soon as the count passes the limit, so an oversized upload is never
held in memory whole.
"""

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


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await problem_response(body_too_large(limit))(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
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
            if response_started or problem.status != 413:
                raise
            await problem_response(problem)(scope, receive, send)
