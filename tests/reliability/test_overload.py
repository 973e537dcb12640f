"""Overload (mark chaos): far more concurrent requests than capacity against a real API with
MAX_CONCURRENT_INFERENCES=1 and MAX_QUEUED_REQUESTS=4. The excess is refused at once with 503
+ Retry-After (type overloaded), admitted requests keep a bounded latency, nothing piles up into
timeouts, and the API is healthy and idle afterwards.
"""

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from reliability_helpers import (
    RADIOGRAPH,
    Api,
    assert_problem,
    metric_value,
    percentile,
    record,
    running_api,
    summarise,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SUITE = "overload"
CONCURRENT = 64
WAVES = 3
MAX_RUNNING = 1
MAX_QUEUED = 4
SOLO_REQUESTS = 8
CLIENT_TIMEOUT_SECONDS = 120.0
PROBES = 5
SATURATION_ROUNDS = 10
PROBE_SERVER_MS = 250.0  # the API's time to refuse one request while every slot and queue place is taken


@dataclass(frozen=True)
class Answer:
    status: int | None
    seconds: float
    retry_after: str | None
    problem_type: str | None
    error: str | None = None


async def one(client: httpx.AsyncClient, image: bytes, start: float) -> Answer:
    try:
        response = await client.post("/v1/predict", files={"file": ("cxr.png", image)})
    except httpx.HTTPError as error:
        return Answer(None, time.monotonic() - start, None, None, repr(error))
    seconds = time.monotonic() - start
    problem_type = None
    if response.status_code != 200:
        problem_type = assert_problem(response, response.status_code)["type"]
    return Answer(response.status_code, seconds, response.headers.get("retry-after"), problem_type)


async def saturated(client: httpx.AsyncClient) -> bool:
    """Every slot is taken and every queue place too (read from the API's own gauges)."""
    text = (await client.get("/metrics")).text
    return (
        metric_value(text, "cxr_inferences_in_flight") == MAX_RUNNING
        and metric_value(text, "cxr_inference_queue_depth") == MAX_QUEUED
    )


async def saturated_probes(api: Api, image: bytes) -> tuple[list[Answer], int]:
    """Fill the slot and the queue with predictions, then send requests one at a time while the
    gauges still say the API is full: each must be refused. A prediction holds its slot for only
    tens of milliseconds, so the queue may start draining before a probe arrives; such a probe is
    rightly admitted, and the holders are sent again until PROBES refusals were seen at saturation
    (an API that admits beyond its capacity never gets there). Returns (refusals, probes admitted)."""
    refusals: list[Answer] = []
    admitted = 0
    async with httpx.AsyncClient(base_url=api.base_url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        for _ in range(SATURATION_ROUNDS):
            holders = [
                asyncio.create_task(client.post("/v1/predict", files={"file": ("x.png", image)}))
                for _ in range(MAX_RUNNING + MAX_QUEUED)
            ]
            deadline = time.monotonic() + 30
            while not await saturated(client) and not all(holder.done() for holder in holders):
                assert time.monotonic() < deadline, "the queue did not fill"
                await asyncio.sleep(0.005)
            while len(refusals) < PROBES and await saturated(client):
                answer = await one(client, image, time.monotonic())
                if answer.status == 503:
                    refusals.append(answer)
                else:
                    assert answer.status == 200, answer
                    admitted += 1
            held = await asyncio.gather(*holders)
            assert all(response.status_code == 200 for response in held)
            if len(refusals) == PROBES:
                break
        return refusals, admitted


async def wave(base_url: str, image: bytes) -> tuple[list[Answer], float]:
    """CONCURRENT requests sent together, each on its own connection; (answers, wall seconds)."""
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS, limits=limits) as client:
        start = time.monotonic()
        answers = await asyncio.gather(*(one(client, image, start) for _ in range(CONCURRENT)))
        return list(answers), time.monotonic() - start


def test_far_more_concurrent_requests_than_capacity(
    model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    image = RADIOGRAPH.read_bytes()
    with running_api(
        model_dir,
        onnx_dir,
        tmp_path_factory.mktemp("overload-api"),
        MAX_CONCURRENT_INFERENCES=MAX_RUNNING,
        MAX_QUEUED_REQUESTS=MAX_QUEUED,
        REQUEST_TIMEOUT_SECONDS=60,
    ) as api:
        solo = []
        for _ in range(SOLO_REQUESTS + 2):
            started = time.monotonic()
            assert api.client.post("/v1/predict", files={"file": ("x.png", image)}).status_code == 200
            solo.append(time.monotonic() - started)
        solo = solo[2:]  # the first ones warm up
        probes, probes_admitted = asyncio.run(saturated_probes(api, image))
        probe_ms = [
            entry["duration_ms"]
            for entry in api.access_log()
            if entry["path"] == "/v1/predict" and entry["status"] == 503
        ]
        answers: list[Answer] = []
        walls = []
        for _ in range(WAVES):
            wave_answers, wall = asyncio.run(wave(api.base_url, image))
            answers += wave_answers
            walls.append(wall)
            time.sleep(1.0)
        in_flight = api.metric("cxr_inferences_in_flight")
        queued = api.metric("cxr_inference_queue_depth")
        rejected_overloaded = api.metric('cxr_requests_rejected_total{reason="overloaded"}') or 0.0
        rejected_timeout = api.metric('cxr_requests_rejected_total{reason="timeout"}') or 0.0
        api.assert_healthy()
        server_errors = api.server_errors(allowed=(503,))
        # Server side: how long the API took to refuse (client-side times add the upload and the
        # client's own scheduling of 64 requests).
        refusal_ms = [
            entry["duration_ms"]
            for entry in api.access_log()
            if entry["path"] == "/v1/predict" and entry["status"] == 503
        ][len(probe_ms) :]

    admitted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 503]
    admitted_s = [a.seconds for a in admitted]
    refused_s = [a.seconds for a in refused]
    solo_p50, solo_p90 = percentile(solo, 50), percentile(solo, 90)
    # An admitted request waits for at most MAX_RUNNING + MAX_QUEUED predictions, then its own.
    admitted_bound = (MAX_RUNNING + MAX_QUEUED + 1) * max(solo_p90, 0.05) * 2.0 + 3.0
    # 64 requests arriving together share one event loop: refusing them all takes a little while,
    # but never a prediction's time per request, and never longer than the slowest admitted one.
    refused_bound = max(1.5, solo_p50 * 4)
    figures = {
        "concurrent": CONCURRENT,
        "waves": WAVES,
        "max_concurrent_inferences": MAX_RUNNING,
        "max_queued_requests": MAX_QUEUED,
        "saturated_probes": [a.status for a in probes],
        "probes_admitted_while_draining": probes_admitted,
        "saturated_probe_server_ms": probe_ms,
        "requests": len(answers),
        "admitted": len(admitted),
        "refused_503": len(refused),
        "other": len(answers) - len(admitted) - len(refused),
        "solo_p50_seconds": round(solo_p50, 3),
        "solo_p90_seconds": round(solo_p90, 3),
        "admitted_p50_seconds": round(percentile(admitted_s, 50), 3),
        "admitted_p99_seconds": round(percentile(admitted_s, 99), 3),
        "admitted_p99_bound_seconds": round(admitted_bound, 2),
        "refused_p50_seconds": round(percentile(refused_s, 50), 3),
        "refused_p99_seconds": round(percentile(refused_s, 99), 3),
        "refused_p99_bound_seconds": round(refused_bound, 2),
        "refused_server_side_p50_ms": round(percentile(refusal_ms, 50), 2),
        "refused_server_side_p99_ms": round(percentile(refusal_ms, 99), 2),
        "refused_server_side_max_ms": round(max(refusal_ms, default=0.0), 2),
        "wave_seconds": [round(wall, 2) for wall in walls],
        "rejected_overloaded_metric": rejected_overloaded,
        "rejected_timeout_metric": rejected_timeout,
        "api_5xx_other_than_503": server_errors,
    }
    record(SUITE, **figures)
    summarise(
        SUITE,
        f"{WAVES} waves of {CONCURRENT} concurrent requests at 1 slot + {MAX_QUEUED} queued: "
        f"{len(admitted)} admitted (p50 {figures['admitted_p50_seconds']} s, p99 "
        f"{figures['admitted_p99_seconds']} s; solo p50 {figures['solo_p50_seconds']} s), "
        f"{len(refused)} refused 503 + Retry-After (p99 {figures['refused_p99_seconds']} s at the client, "
        f"{figures['refused_server_side_p99_ms']} ms in the API; a lone request at saturation refused in "
        f"{max(probe_ms, default=0.0):.0f} ms), "
        f"0 timeouts expected / {int(rejected_timeout)} seen; other 5xx: {server_errors}",
    )
    unanswered = [a for a in answers if a.status is None]
    assert not unanswered, unanswered[:3]
    assert {a.status for a in answers} <= {200, 503}, figures
    assert all(a.retry_after and a.retry_after.isdigit() for a in refused)
    assert {a.problem_type for a in refused} == {"urn:cxr:problem:overloaded"}, figures
    # Most of the excess is refused (a few more get in as slots free up during a wave).
    assert len(refused) >= WAVES * (CONCURRENT - 4 * (MAX_RUNNING + MAX_QUEUED)), figures
    assert len(admitted) >= WAVES * (MAX_RUNNING + MAX_QUEUED), figures
    assert len(probes) == len(probe_ms) == PROBES and max(probe_ms) <= PROBE_SERVER_MS, figures
    assert len(refusal_ms) == len(refused), figures
    assert percentile(refusal_ms, 99) / 1000 <= refused_bound, figures
    assert percentile(refused_s, 99) <= max(refused_bound, percentile(admitted_s, 99)), figures
    assert percentile(admitted_s, 99) <= admitted_bound, figures
    assert rejected_timeout == 0 and rejected_overloaded == len(refused) + PROBES, figures
    assert in_flight == 0 and queued == 0, figures
    assert server_errors == 0
