"""Admission control through the API: 503 + Retry-After at once when slots and queue are full;
and 503 when a prediction runs past REQUEST_TIMEOUT_SECONDS."""

import threading
import time

import pytest
from api_helpers import MakeSettings, Serve, assert_problem, hold_slot, release, upload


def test_full_slots_and_no_queue_refuse_at_once(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    with serve(make_settings(max_concurrent_inferences=1, max_queued_requests=0)) as client:
        slot = hold_slot(client)
        try:
            started = time.monotonic()
            response = upload(client, radiograph_png)
            elapsed = time.monotonic() - started
            problem = assert_problem(response, 503)
            assert problem["type"] == "urn:cxr:problem:overloaded" and response.headers["retry-after"] == "1"
            assert elapsed < 5
            metrics = client.get("/metrics").text
            assert 'cxr_requests_rejected_total{reason="overloaded"} 1.0' in metrics
            assert "cxr_inferences_in_flight 1.0" in metrics
        finally:
            release(client, slot)
        assert upload(client, radiograph_png).status_code == 200


def test_a_queued_request_waits_and_the_next_one_is_refused(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    with serve(make_settings(max_concurrent_inferences=1, max_queued_requests=1)) as client:
        admission = client.app.state.service.admission  # type: ignore[attr-defined]
        slot = hold_slot(client)
        queued: dict[str, int] = {}
        waiter = threading.Thread(
            target=lambda: queued.update(status=upload(client, radiograph_png).status_code)
        )
        waiter.start()
        try:
            deadline = time.monotonic() + 30
            while admission.queued < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert admission.queued == 1
            assert "cxr_inference_queue_depth 1.0" in client.get("/metrics").text
            assert_problem(upload(client, radiograph_png), 503)
        finally:
            release(client, slot)
        waiter.join(60)
        assert queued == {"status": 200}
        assert admission.queued == 0 and admission.running == 0


@pytest.mark.parametrize("query", ["", "?heatmaps=none"])  # with heatmaps to draw, and without
def test_a_prediction_over_the_request_timeout_is_503(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes, query: str
) -> None:
    with serve(make_settings(request_timeout_seconds=0.001)) as client:
        response = upload(client, radiograph_png, query)
        problem = assert_problem(response, 503)
        assert problem["type"] == "urn:cxr:problem:timeout" and response.headers["retry-after"]
        assert 'cxr_requests_rejected_total{reason="timeout"} 1.0' in client.get("/metrics").text
