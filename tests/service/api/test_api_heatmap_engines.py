"""Which engine makes the heatmaps, through the API: the sidecar (engine "tensorflow"), else the
CAM fast path with a warning, and a hanging sidecar costs the timeout only until the breaker opens."""

import time

from api_helpers import MakeSettings, StubSidecar, decode_png, served, upload

from service.api.app import create_app
from service.api.model_runtime import ModelRuntime


def test_sidecar_maps_are_used_when_it_serves_the_same_model(
    make_settings: MakeSettings, runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    with StubSidecar(runtime.card.sha256) as stub:
        with served(create_app(make_settings(gradcam_url=stub.url), loader=lambda _: runtime)) as client:
            body = upload(client, radiograph_png, "?heatmaps=top:2&heatmap_size=64").json()
        assert stub.gradcam_calls == 1
    assert body["heatmap_engine"] == "tensorflow" and body["warnings"] == []
    assert len(body["heatmaps"]) == 2
    assert all(decode_png(text).size == (64, 64) for text in body["heatmaps"].values())


def test_a_sidecar_of_another_model_is_not_used(
    make_settings: MakeSettings, runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    with StubSidecar("f" * 64) as stub:
        with served(create_app(make_settings(gradcam_url=stub.url), loader=lambda _: runtime)) as client:
            body = upload(client, radiograph_png, "?heatmaps=Mass").json()
        assert stub.gradcam_calls == 0
    assert body["heatmap_engine"] == "cam"
    assert any("model_mismatch" in warning for warning in body["warnings"])


def test_hanging_sidecar_falls_back_and_the_breaker_stops_the_waiting(
    make_settings: MakeSettings, runtime: ModelRuntime, radiograph_png: bytes, hanging_url: str
) -> None:
    settings = make_settings(
        gradcam_url=hanging_url,
        gradcam_timeout_seconds=1.0,
        gradcam_failure_threshold=2,
        gradcam_retry_seconds=600,
    )
    with served(create_app(settings, loader=lambda _: runtime)) as client:
        upload(client, radiograph_png)  # warm up: the first prediction pays one-off costs
        for _ in range(2):
            started = time.monotonic()
            body = upload(client, radiograph_png, "?heatmaps=Mass").json()
            assert time.monotonic() - started >= 1.0  # waited for the sidecar's timeout
            assert body["heatmap_engine"] == "cam" and "timeout" in body["warnings"][0]
        baseline_started = time.monotonic()
        upload(client, radiograph_png)
        baseline = time.monotonic() - baseline_started
        started = time.monotonic()
        body = upload(client, radiograph_png, "?heatmaps=Mass").json()
        assert time.monotonic() - started < baseline + 0.9  # the open breaker skipped the sidecar
        assert body["heatmap_engine"] == "cam" and "circuit_open" in body["warnings"][0]
        metrics = client.get("/metrics").text
        assert 'cxr_sidecar_failures_total{reason="timeout"} 2.0' in metrics
        assert 'cxr_sidecar_failures_total{reason="circuit_open"} 1.0' in metrics
        assert client.get("/readyz").json()["sidecar"]["circuit"] == "open"


def test_the_api_returns_to_the_sidecar_when_it_recovers(
    make_settings: MakeSettings, runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    with StubSidecar(runtime.card.sha256) as stub:
        stub.mode = "error"
        retry = 4.0
        settings = make_settings(
            gradcam_url=stub.url, gradcam_failure_threshold=1, gradcam_retry_seconds=retry
        )
        with served(create_app(settings, loader=lambda _: runtime)) as client:
            assert upload(client, radiograph_png, "?heatmaps=Mass").json()["heatmap_engine"] == "cam"
            opened = time.monotonic()
            stub.mode = "ok"
            assert upload(client, radiograph_png, "?heatmaps=Mass").json()["heatmap_engine"] == "cam"  # open
            assert time.monotonic() - opened < retry, "too slow to observe the open breaker"
            time.sleep(max(0.0, opened + retry + 0.1 - time.monotonic()))
            assert upload(client, radiograph_png, "?heatmaps=Mass").json()["heatmap_engine"] == "tensorflow"
        assert stub.gradcam_calls == 2
