"""The load generator against a real API process: answers counted, failures named, its own CPU kept."""

from pathlib import Path

import pytest

from bench.loadgen import merge, run_load
from bench.services import start_api


@pytest.mark.slow  # starts an API process that loads the model
def test_load_counts_answers_failures_and_the_clients_cpu(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path], tmp_path: Path
) -> None:
    image = fixture_images[0].read_bytes()
    api = start_api(model_dir, onnx_dir, "http://127.0.0.1:9", tmp_path)
    try:
        served = run_load(
            api.url + "/v1/predict",
            image,
            concurrency=2,
            requests=4,
            warmup=1,
            params={"heatmaps": "none"},
            count_field="heatmap_engine",
        )
        missing = run_load(api.url + "/v1/no-such-route", image, concurrency=1, requests=2, warmup=0)
    finally:
        api.stop()
    assert (served.ok, served.failures, served.field_counts) == (4, 0, {"None": 4})
    assert served.throughput > 0 and served.percentile(50) is not None
    assert served.client_cpu_ms_per_request is not None and served.client_cpu_ms_per_request > 0
    assert (missing.ok, missing.errors) == (0, {"HTTP 404": 2})
    both = merge([served, missing])
    assert both.client_cpu_seconds == served.client_cpu_seconds + missing.client_cpu_seconds
    assert both.summary()["failures"] == 2
