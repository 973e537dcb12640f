"""Helpers for tests that call the API (importable as `from api_helpers import ...`)."""

import base64
import io
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import Any

import httpx
import httpx2
import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from service.api.settings import Settings

MakeSettings = Callable[..., Settings]  # the make_settings fixture: make_settings(api_keys="...", ...)
Serve = Callable[[Settings], AbstractContextManager[TestClient]]  # the serve fixture

LOAD_SECONDS = 120.0
BROWSER_API_KEY = "page-test-key-7f3a9c"  # the key of the live API of the browser tests (api_url)


@contextmanager
def served(app: FastAPI) -> Iterator[TestClient]:
    """TestClient with the lifespan running, once the model has loaded (or failed to)."""
    with TestClient(app) as client:
        assert app.state.service.load_finished.wait(LOAD_SECONDS), "model did not load"
        yield client


# TestClient answers with httpx2 responses; real processes are called with httpx.
AnyResponse = httpx.Response | httpx2.Response
PROBLEM_FIELDS = {"type", "title", "status", "detail", "request_id"}


def upload(
    client: TestClient, data: bytes, query: str = "", headers: dict[str, str] | None = None
) -> httpx2.Response:
    """POST /v1/predict with `data` as the multipart `file` part."""
    return client.post(
        f"/v1/predict{query}", files={"file": ("image", data, "application/octet-stream")}, headers=headers
    )


def post_json(client: TestClient, body: dict[str, Any], query: str = "") -> httpx2.Response:
    return client.post(f"/v1/predict{query}", json=body)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def predict_probabilities(client: TestClient, data: bytes) -> dict[str, float]:
    """The probabilities the API gives for image file bytes `data` (asserts a 200)."""
    response = upload(client, data)
    assert response.status_code == 200, response.text
    probabilities: dict[str, float] = response.json()["probabilities"]
    return probabilities


def hold_slot(client: TestClient) -> AbstractAsyncContextManager[None]:
    """Take one inference slot on the app's event loop, as a running prediction does."""
    slot = client.app.state.service.admission.slot()  # type: ignore[attr-defined]
    client.portal.call(slot.__aenter__)  # type: ignore[union-attr]
    return slot


def release(client: TestClient, slot: AbstractAsyncContextManager[None]) -> None:
    client.portal.call(slot.__aexit__, None, None, None)  # type: ignore[union-attr]


def max_difference(first: dict[str, float], second: dict[str, float]) -> float:
    assert list(first) == list(second)
    return max(abs(first[label] - second[label]) for label in first)


def assert_problem(response: AnyResponse, status: int) -> dict[str, Any]:
    """The response is application/problem+json with `status` and every problem field."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("urn:cxr:problem:")
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def decode_png(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)), formats=["PNG"])
    image.load()
    return image


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class StubSidecar:
    """A real HTTP server speaking service/gradcam_protocol.py, with switchable behaviour.

    mode: "ok" (maps: a ramp, rolled by the label's index, so each label has its own map),
    "error" (500), "garbage" (200, not the protocol). `sha256` and `instance_id` are what /readyz
    reports (change `instance_id` to play a restarted sidecar). Not the real sidecar (that one is
    tested with TensorFlow by its own tests): this one lets the API's client be tested on success
    and on each failure.
    """

    def __init__(self, sha256: str, heatmap_shape: tuple[int, int] = (4, 4)) -> None:
        import http.server
        import json
        import threading

        from cxr.labels import label_index
        from service.gradcam_protocol import GRADCAM_PATH, GradCamRequest, GradCamResponse, encode_array

        self.sha256 = sha256
        self.instance_id = "stub-1"
        self.mode = "ok"
        self.gradcam_calls = 0
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: dict[str, Any] | bytes) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/readyz":
                    ready = {"status": "ready", "sha256": stub.sha256, "instance_id": stub.instance_id}
                    self._answer(200, {**ready, "started_at": 1.7e9})
                else:
                    self._answer(200, {"status": "ok"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                request = GradCamRequest.model_validate_json(self.rfile.read(length))
                stub.gradcam_calls += 1
                if self.path != GRADCAM_PATH or stub.mode == "error":
                    self._answer(500, {"detail": "broken"})
                    return
                if stub.mode == "garbage":
                    self._answer(200, b'{"unexpected": true}')
                    return
                ramp = np.linspace(0, 1, heatmap_shape[0] * heatmap_shape[1], dtype=np.float32)
                answer = GradCamResponse(
                    layer="relu",
                    heatmap_shape=heatmap_shape,
                    heatmaps={
                        label: encode_array(np.roll(ramp, label_index(label)).reshape(heatmap_shape))
                        for label in request.labels
                    },
                    seconds=0.01,
                )
                self._answer(200, answer.model_dump(mode="json"))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "StubSidecar":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
