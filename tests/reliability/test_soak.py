"""Soak (mark soak): sustained mixed load on a real API: PNG, JPEG, DICOM and JSON predictions
with and without heatmaps (CAM fast path: no sidecar), a bad file now and then, model card,
readiness and metrics. No errors, VmRSS growth <= 5 % after the warm-up, open file descriptors
flat.

SOAK_SECONDS (default 45, what CI runs) sets the measured duration; `make soak` runs 300 s.
The warm-up (SOAK_WARM_UP_SECONDS, default 20 % of it, at least 20 s) runs the same load first so
that lazy imports, worker threads and allocator arenas have settled before the baseline.
"""

import base64
import io
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from dicom_factory import make_dicom
from PIL import Image
from reliability_helpers import (
    RADIOGRAPH,
    LoadGenerator,
    Outcome,
    fd_count,
    percentile,
    record,
    rss_kb,
    running_api,
    summarise,
)

pytestmark = [pytest.mark.soak, pytest.mark.slow]

SUITE = "soak"
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
WARM_UP_SECONDS = float(os.environ.get("SOAK_WARM_UP_SECONDS", str(max(20.0, SOAK_SECONDS * 0.2))))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "3"))
SAMPLE_SECONDS = 2.0
RSS_GROWTH_BOUND = 0.05
FD_SLACK = 2  # idle descriptors after the soak vs before it


def _inputs() -> dict[str, bytes]:
    with Image.open(RADIOGRAPH) as image:
        grey = image.convert("L")
        small = grey.resize((512, 512))
    jpeg = io.BytesIO()
    small.save(jpeg, format="JPEG", quality=90)
    png = RADIOGRAPH.read_bytes()
    return {
        "png": png,
        "jpeg": jpeg.getvalue(),
        "dicom": make_dicom(np.asarray(small, dtype=np.uint8), 8),
        "truncated": png[: len(png) // 3],
        "b64": base64.b64encode(png).decode().encode(),
    }


INPUTS = _inputs()
# (kind, expected status), cycled through by request sequence number; `send` makes each kind.
MIX: list[tuple[str, int]] = [
    ("png", 200),
    ("png heatmaps top:2", 200),
    ("jpeg", 200),
    ("json heatmaps mask", 200),
    ("dicom heatmaps top:1", 200),
    ("truncated png", 415),
    ("png", 200),
    ("model card", 200),
    ("readyz", 200),
    ("metrics", 200),
]
EXPECTED = dict(MIX)


def send(client: httpx.Client, sequence: int) -> tuple[str, httpx.Response]:
    kind = MIX[sequence % len(MIX)][0]
    if kind == "png":
        return kind, client.post("/v1/predict", files={"file": ("a.png", INPUTS["png"])})
    if kind == "png heatmaps top:2":
        return kind, client.post("/v1/predict?heatmaps=top:2", files={"file": ("a.png", INPUTS["png"])})
    if kind == "jpeg":
        return kind, client.post("/v1/predict", files={"file": ("a.jpg", INPUTS["jpeg"])})
    if kind == "json heatmaps mask":
        body = b'{"image_base64": "' + INPUTS["b64"] + b'", "heatmaps": "Effusion", "heatmap_style": "mask"}'
        return kind, client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    if kind == "dicom heatmaps top:1":
        return kind, client.post("/v1/predict?heatmaps=top:1", files={"file": ("a.dcm", INPUTS["dicom"])})
    if kind == "truncated png":
        return kind, client.post("/v1/predict", files={"file": ("a.png", INPUTS["truncated"])})
    if kind == "model card":
        return kind, client.get("/v1/model")
    if kind == "readyz":
        return kind, client.get("/readyz")
    return kind, client.get("/metrics")


def is_error(outcome: Outcome) -> bool:
    return outcome.status != EXPECTED.get(outcome.kind)


def run_load(base_url: str, seconds: float, pid: int) -> tuple[list[Outcome], list[tuple[float, int, int]]]:
    """CLIENTS clients for `seconds`; (outcomes, samples of (t, RSS KiB, fds) every SAMPLE_SECONDS)."""
    load = LoadGenerator(base_url, send, CLIENTS).start()
    samples = []
    started = time.monotonic()
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            time.sleep(min(SAMPLE_SECONDS, max(seconds - elapsed, 0.01)))
            samples.append((round(time.monotonic() - started, 1), rss_kb(pid), fd_count(pid)))
    finally:
        outcomes = load.stop()
    return outcomes, samples


def test_sustained_load(model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_api(
        model_dir, onnx_dir, tmp_path_factory.mktemp("soak-api"), REQUEST_TIMEOUT_SECONDS=60
    ) as api:
        warm_up, _ = run_load(api.base_url, WARM_UP_SECONDS, api.pid)
        time.sleep(1.0)
        rss_before, fds_before = api.rss_kb(), api.fds()
        started = time.monotonic()
        outcomes, samples = run_load(api.base_url, SOAK_SECONDS, api.pid)
        wall = time.monotonic() - started
        time.sleep(1.0)
        rss_after, fds_after = api.rss_kb(), api.fds()
        api.assert_healthy()
        status_counts = api.status_counts()
        server_errors = api.server_errors()
        unhandled = api.log_text().count("unhandled ")

    errors = [o for o in outcomes + warm_up if is_error(o)]
    predictions = [o.seconds for o in outcomes if o.kind not in ("model card", "readyz", "metrics")]
    growth = (rss_after - rss_before) / rss_before
    thirds = max(len(samples) // 3, 1)
    early = float(np.mean([rss for _, rss, _ in samples[:thirds]]))
    late = float(np.mean([rss for _, rss, _ in samples[-thirds:]]))
    fds_during = [fds for _, _, fds in samples]
    by_kind: dict[str, int] = {}
    for outcome in outcomes:
        by_kind[outcome.kind] = by_kind.get(outcome.kind, 0) + 1
    figures = {
        "soak_seconds": round(wall, 1),
        "warm_up_seconds": WARM_UP_SECONDS,
        "clients": CLIENTS,
        "requests": len(outcomes),
        "warm_up_requests": len(warm_up),
        "requests_per_second": round(len(outcomes) / wall, 2),
        "by_kind": by_kind,
        "errors": len(errors),
        "api_5xx": server_errors,
        "api_statuses": {str(status): n for status, n in sorted(status_counts.items())},
        "unhandled_errors_logged": unhandled,
        "prediction_p50_seconds": round(percentile(predictions, 50), 3),
        "prediction_p99_seconds": round(percentile(predictions, 99), 3),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_growth_percent": round(100 * growth, 2),
        "rss_growth_under_load_percent": round(100 * (late - early) / early, 2),
        "rss_peak_kb": max((rss for _, rss, _ in samples), default=rss_after),
        "fds_before": fds_before,
        "fds_after": fds_after,
        "fds_during_min": min(fds_during, default=fds_after),
        "fds_during_max": max(fds_during, default=fds_after),
        "samples": samples,
    }
    record(SUITE, **figures)
    summarise(
        SUITE,
        f"{len(outcomes)} requests in {wall:.0f} s ({figures['requests_per_second']} req/s, "
        f"{CLIENTS} clients, after {WARM_UP_SECONDS:.0f} s warm-up); errors: {len(errors)}, "
        f"5xx: {server_errors}; predictions p50 {figures['prediction_p50_seconds']} s "
        f"p99 {figures['prediction_p99_seconds']} s; RSS "
        f"{rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB ({100 * growth:+.2f} %); fds {fds_before} -> "
        f"{fds_after} (during load {figures['fds_during_min']}-{figures['fds_during_max']})",
    )
    assert not errors, errors[:5]
    assert server_errors == 0 and unhandled == 0, status_counts
    assert growth <= RSS_GROWTH_BOUND, figures
    assert fds_after <= fds_before + FD_SLACK, figures
    assert max(fds_during) - min(fds_during) <= CLIENTS + FD_SLACK, figures
