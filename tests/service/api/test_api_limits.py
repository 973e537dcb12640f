"""Body size limit: refused from Content-Length before reading, or while streaming."""

import asyncio
import json
from typing import Any

import pytest
from api_helpers import MakeSettings, Serve, assert_problem
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from service.api.limits import BodyLimitMiddleware
from service.api.problems import Problem, problem_response

LIMIT = 1000


async def reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, answers its length; maps Problem like the API's handler does."""
    try:
        body = await Request(scope, receive).body()
    except Problem as problem:
        await problem_response(problem)(scope, receive, send)
        return
    await JSONResponse({"length": len(body)})(scope, receive, send)


def run(chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> tuple[list[Message], int]:
    """Drive the middleware; (messages sent, number of body chunks the app pulled)."""
    sent: list[Message] = []
    pulled = 0

    async def receive() -> Message:
        nonlocal pulled
        index = pulled
        pulled += 1
        if index >= len(chunks):
            raise AssertionError("read past the end of the body")
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": headers,
        "query_string": b"",
    }
    asyncio.run(BodyLimitMiddleware(reading_app, LIMIT)(scope, receive, send))
    return sent, pulled


def status_and_body(sent: list[Message]) -> tuple[int, dict[str, Any]]:
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_declared_length_over_the_limit_is_refused_without_reading() -> None:
    sent, pulled = run([b"x" * 10], [(b"content-length", str(LIMIT + 1).encode())])
    status, body = status_and_body(sent)
    assert status == 413 and body["status"] == 413 and str(LIMIT) in body["detail"]
    assert pulled == 0


def test_streamed_body_is_cut_off_as_soon_as_it_passes_the_limit() -> None:
    chunks = [b"x" * 300] * 20  # 6000 bytes, no Content-Length (chunked)
    sent, pulled = run(chunks, [(b"transfer-encoding", b"chunked")])
    status, _ = status_and_body(sent)
    assert status == 413
    assert pulled == 4  # 1200 bytes read: the 4th chunk crossed 1000; the other 16 never were


def test_a_body_lying_about_its_length_is_counted() -> None:
    sent, pulled = run([b"x" * 600, b"x" * 600], [(b"content-length", b"10")])
    assert status_and_body(sent)[0] == 413 and pulled == 2


@pytest.mark.parametrize("size", [0, 1, LIMIT])
def test_bodies_up_to_the_limit_pass(size: int) -> None:
    sent, _ = run([b"x" * size], [(b"content-length", str(size).encode())])
    assert status_and_body(sent) == (200, {"length": size})


def test_the_api_answers_413_problem_json(serve: Serve, make_settings: MakeSettings) -> None:
    with serve(make_settings(max_body_bytes=4096)) as client:
        declared = client.post("/v1/predict", files={"file": ("x.png", b"\x89PNG" + b"0" * 5000)})
        body = assert_problem(declared, 413)
        assert "4096 bytes" in body["detail"]

        def stream() -> Any:
            for _ in range(10):
                yield b"0" * 1000

        streamed = client.post("/v1/predict", content=stream(), headers={"Content-Type": "application/json"})
        assert_problem(streamed, 413)
        # Under the limit the same route parses the body.
        assert (
            client.post("/v1/predict", content=b"{", headers={"Content-Type": "application/json"}).status_code
            == 400
        )
