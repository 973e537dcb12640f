"""/healthz and /readyz: answering while the model loads, ready, degraded, failed."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import MakeSettings, StubSidecar, assert_problem, served, upload
from fastapi.testclient import TestClient

from service.api.app import create_app
from service.api.model_runtime import ModelLoadError, ModelRuntime
from service.api.settings import Settings


def test_healthz(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_but_degraded_without_a_sidecar(
    client: TestClient, runtime: ModelRuntime, closed_port_url: str
) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True and body["state"] == "degraded"
    assert body["model"] == {
        "state": "ready",
        "name": runtime.card.name,
        "version": runtime.card.version,
        "sha256": runtime.card.sha256,
        "precision": runtime.precision,
        "error": None,
    }
    sidecar = body["sidecar"]
    assert sidecar["url"] == closed_port_url
    assert (
        sidecar["reachable"] is False
        and sidecar["ready"] is False
        and sidecar["circuit"] in ("closed", "open")
    )


@pytest.mark.parametrize(("sha_matches", "state"), [(True, "ready"), (False, "degraded")])
def test_ready_with_a_sidecar_serving_the_same_model(
    make_settings: MakeSettings, runtime: ModelRuntime, sha_matches: bool, state: str
) -> None:
    sha = runtime.card.sha256 if sha_matches else "0" * 64
    with (
        StubSidecar(sha) as stub,
        served(create_app(make_settings(gradcam_url=stub.url), loader=lambda _: runtime)) as client,
    ):
        body = client.get("/readyz").json()
    assert body["state"] == state
    assert body["sidecar"]["reachable"] is True and body["sidecar"]["ready"] is True
    assert body["sidecar"]["same_model"] is sha_matches


@pytest.fixture
def gated_loader(runtime: ModelRuntime) -> Iterator[tuple[Any, threading.Event]]:
    gate = threading.Event()

    def load(_: Settings) -> ModelRuntime:
        assert gate.wait(60)
        return runtime

    yield load, gate
    gate.set()


def test_not_ready_while_the_model_loads(
    make_settings: MakeSettings, gated_loader: tuple[Any, threading.Event], radiograph_png: bytes
) -> None:
    loader, gate = gated_loader
    app = create_app(make_settings(), loader=loader)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        readiness = client.get("/readyz")
        body = assert_problem(readiness, 503)
        assert readiness.headers["retry-after"] == "5"
        assert body["ready"] is False and body["state"] == "loading" and body["model"]["state"] == "loading"
        predict = upload(client, radiograph_png)
        assert assert_problem(predict, 503)["type"] == "urn:cxr:problem:not-ready"
        assert predict.headers["retry-after"] == "5"
        assert_problem(client.get("/v1/model"), 503)
        gate.set()
        assert app.state.service.load_finished.wait(30)
        assert client.get("/readyz").status_code == 200
        assert upload(client, radiograph_png).status_code == 200
        assert 'cxr_requests_rejected_total{reason="not_ready"} 2.0' in client.get("/metrics").text


def test_failed_load_is_reported_and_stops_the_server(
    make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    stopped = threading.Event()

    def failing(_: Settings) -> ModelRuntime:
        raise ModelLoadError("build/model.onnx", "sha256 is 1234, the export manifest says 5678")

    app = create_app(make_settings(), loader=failing, on_load_failure=stopped.set)
    with served(app) as client:
        assert stopped.wait(5)
        body = assert_problem(client.get("/readyz"), 503)
        assert body["state"] == "failed" and body["model"]["state"] == "failed"
        assert body["model"]["error"] == "build/model.onnx: sha256 is 1234, the export manifest says 5678"
        assert "failed to load" in assert_problem(upload(client, radiograph_png), 503)["detail"]


def test_healthz_answers_at_once_during_a_slow_load(
    make_settings: MakeSettings, gated_loader: tuple[Any, threading.Event]
) -> None:
    loader, _ = gated_loader
    with TestClient(create_app(make_settings(), loader=loader)) as client:
        started = time.monotonic()
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 5
