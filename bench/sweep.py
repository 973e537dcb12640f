"""`--sweep`: the API's onnxruntime and admission settings, each started fresh and measured at
concurrency 1 and at the benchmark's concurrency."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bench.procs import RssSampler
from bench.services import load, start_api


def sweep_settings(cores: int) -> list[dict[str, str]]:
    """The defaults first, then one change at a time."""
    from service.api.settings import Settings

    fields = Settings.model_fields
    default = {
        "ORT_INTRA_OP_THREADS": str(cores),
        "ORT_THREADS_UNDER_LOAD": str(fields["ort_threads_under_load"].default),
        "MAX_CONCURRENT_INFERENCES": str(fields["max_concurrent_inferences"].default),
        "ORT_ALLOW_SPINNING": "1" if fields["ort_allow_spinning"].default else "0",
    }
    variants = [
        {"ORT_THREADS_UNDER_LOAD": "0"},
        {"ORT_THREADS_UNDER_LOAD": "0", "ORT_ALLOW_SPINNING": "0"},
        {"ORT_INTRA_OP_THREADS": "1", "ORT_THREADS_UNDER_LOAD": "0", "ORT_ALLOW_SPINNING": "0"},
        {"ORT_ALLOW_SPINNING": "0"},
        {"MAX_CONCURRENT_INFERENCES": "1"},
        {"MAX_CONCURRENT_INFERENCES": str(cores)},
        {"MAX_CONCURRENT_INFERENCES": str(2 * cores)},
    ]
    rows = [default]
    for settings in ({**default, **change} for change in variants):
        if settings not in rows:
            rows.append(settings)
    return rows


def sweep(
    model_dir: Path,
    onnx_dir: Path,
    image: bytes,
    sidecar_url: str,
    log_dir: Path,
    concurrency: int,
    requests: int,
    duration: float,
) -> list[dict[str, Any]]:
    rows = []
    for settings in sweep_settings(len(os.sched_getaffinity(0))):
        print(f"sweep {settings} ...", flush=True)
        api = start_api(model_dir, onnx_dir, sidecar_url, log_dir, settings)
        try:
            single = load(api, image, concurrency=1, requests=requests, warmup=3, params={"heatmaps": "none"})
            with RssSampler(api) as rss:
                loaded = load(
                    api, image, concurrency=concurrency, duration=duration, params={"heatmaps": "none"}
                )
        finally:
            api.stop()
        rows.append(
            {
                "settings": settings,
                "p50_c1_ms": single.summary()["p50_ms"],
                "throughput_rps": loaded.summary()["throughput_rps"],
                "p95_ms_loaded": loaded.summary()["p95_ms"],
                "failures": single.failures + loaded.failures,
                "rss_peak_mb": round(rss.peak_mb or 0, 1),
            }
        )
    return rows


def format_sweep(rows: list[dict[str, Any]], concurrency: int) -> list[str]:
    lines = ["serving settings (probabilities only; the first row is the defaults):"]
    for entry in rows:
        lines.append(
            f"  {entry['settings']}: p50 c=1 {entry['p50_c1_ms']} ms, c={concurrency} "
            f"{entry['throughput_rps']} req/s (p95 {entry['p95_ms_loaded']} ms), "
            f"RSS {entry['rss_peak_mb']} MB, failures {entry['failures']}"
        )
    return lines
