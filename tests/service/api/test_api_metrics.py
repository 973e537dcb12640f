"""GET /metrics: Prometheus text with request, latency, inference, admission and sidecar series."""

from api_helpers import MakeSettings, Serve, upload
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_cover_the_contract(serve: Serve, make_settings: MakeSettings, radiograph_png: bytes) -> None:
    with serve(make_settings()) as client:
        upload(client, radiograph_png)
        upload(client, radiograph_png, "?heatmaps=Mass")
        upload(client, b"not an image")
        client.get("/healthz")
        client.get("/nowhere/at/all")
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    values = samples(response.text)

    def value(name: str, **labels: str) -> float:
        return values.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("cxr_http_requests_total", endpoint="/v1/predict", method="POST", status="200") == 2
    assert value("cxr_http_requests_total", endpoint="/v1/predict", method="POST", status="415") == 1
    assert value("cxr_http_requests_total", endpoint="/healthz", method="GET", status="200") == 1
    assert value("cxr_http_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert value("cxr_http_request_duration_seconds_count", endpoint="/v1/predict", method="POST") == 3
    assert (
        value("cxr_http_request_duration_seconds_bucket", endpoint="/v1/predict", method="POST", le="+Inf")
        == 3
    )
    assert value("cxr_inference_seconds_count") == 2
    assert value("cxr_inference_seconds_sum") > 0
    assert value("cxr_preprocess_seconds_count") == 2
    assert ("cxr_inferences_in_flight", ()) in values and ("cxr_inference_queue_depth", ()) in values
    assert value("cxr_http_requests_in_flight") == 1  # the /metrics request itself
    assert value("cxr_sidecar_failures_total", reason="refused") == 1
    assert value("cxr_heatmap_responses_total", engine="cam") == 1
    assert value("cxr_model_ready") == 1


def test_each_app_has_its_own_registry(serve: Serve, make_settings: MakeSettings, client: TestClient) -> None:
    with serve(make_settings()) as other:
        other.get("/healthz")
        other.get("/healthz")
        counted = samples(other.get("/metrics").text)
    key = ("cxr_http_requests_total", (("endpoint", "/healthz"), ("method", "GET"), ("status", "200")))
    assert counted[key] == 2
