"""`--sweep`: the API's onnxruntime and admission settings, each started fresh and measured at
concurrency 1 and at the benchmark's concurrency."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult
from bench.procs import RssSampler, Service
from bench.report import Comparison, ordered
from bench.services import load, start_api, start_sidecar


def sweep_settings(cores: int) -> list[dict[str, str]]:
    """The defaults first, then one change at a time."""
    from service.api.settings import Settings

    defaults = Settings.from_environ({})
    default = {
        "ORT_INTRA_OP_THREADS": str(defaults.ort_intra_op_threads),
        "ORT_THREADS_UNDER_LOAD": str(defaults.ort_threads_under_load),
        "MAX_CONCURRENT_INFERENCES": str(defaults.max_concurrent_inferences),
        "ORT_ALLOW_SPINNING": "1" if defaults.ort_allow_spinning else "0",
    }
    other_spinning = "0" if defaults.ort_allow_spinning else "1"
    variants = [
        {"ORT_THREADS_UNDER_LOAD": "0"},
        {"ORT_THREADS_UNDER_LOAD": "0", "ORT_ALLOW_SPINNING": other_spinning},
        {"ORT_INTRA_OP_THREADS": "1", "ORT_THREADS_UNDER_LOAD": "0", "ORT_ALLOW_SPINNING": "0"},
        {"ORT_ALLOW_SPINNING": other_spinning},
        {"MAX_CONCURRENT_INFERENCES": "1"},
        {"MAX_CONCURRENT_INFERENCES": str(cores)},
        {"MAX_CONCURRENT_INFERENCES": str(2 * cores)},
    ]
    rows = [default]
    for settings in ({**default, **change} for change in variants):
        if settings not in rows:
            rows.append(settings)
    return rows


@dataclass(frozen=True)
class SweepTarget:
    """What every API the sweep starts serves (model, export, sidecar, logs) and the load it gets."""

    model_dir: Path
    onnx_dir: Path
    image: bytes
    sidecar_url: str
    log_dir: Path
    concurrency: int

    def start(self, settings: dict[str, str]) -> Service:
        return start_api(self.model_dir, self.onnx_dir, self.sidecar_url, self.log_dir, settings)

    def load(self, api: Service, **kwargs: Any) -> LoadResult:
        """Probabilities only, the same image every time."""
        return load(api, self.image, params={"heatmaps": "none"}, **kwargs)


def sweep(target: SweepTarget, requests: int, duration: float) -> list[dict[str, Any]]:
    rows = []
    for settings in sweep_settings(len(os.sched_getaffinity(0))):
        print(f"sweep {settings} ...", flush=True)
        api = target.start(settings)
        try:
            single = target.load(api, concurrency=1, requests=requests, warmup=3)
            with RssSampler(api) as rss:
                loaded = target.load(api, concurrency=target.concurrency, duration=duration)
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


def concurrent_inferences(target: SweepTarget, duration: float, rounds: int) -> dict[str, Any]:
    """Throughput at the target's concurrency with MAX_CONCURRENT_INFERENCES = the cores + 1 over
    the cores (the default), two APIs alternated in rounds: a difference of a few percent, which
    one pass per sweep row cannot show."""
    cores = len(os.sched_getaffinity(0))
    comparison = Comparison(
        "slots", f"c={target.concurrency}: {cores + 1} / {cores} concurrent inferences", 1.0, True, ""
    )
    apis = {}
    try:
        for slots in (cores + 1, cores):
            print(f"MAX_CONCURRENT_INFERENCES={slots} ...", flush=True)
            apis[slots] = target.start({"MAX_CONCURRENT_INFERENCES": str(slots)})
        for index in range(rounds):
            rate = {}
            for slots in ordered(index, cores + 1, cores):
                rate[slots] = target.load(
                    apis[slots], concurrency=target.concurrency, duration=duration
                ).throughput
            comparison.add(rate[cores + 1], rate[cores])
    finally:
        for api in apis.values():
            api.stop()
    return comparison.summary()


def format_concurrent_inferences(summary: dict[str, Any]) -> list[str]:
    return [
        f"{summary['what']}: {summary['value']} [{summary['low']:.3f}, {summary['high']:.3f}] "
        f"({summary['numerator_median']} vs {summary['denominator_median']} req/s, medians of "
        f"{len(summary['rounds'])} alternated rounds)"
    ]


def sidecar_sweep(
    model_dir: Path, onnx_dir: Path, image: bytes, log_dir: Path, requests: int, timeout: float
) -> list[dict[str, Any]]:
    """TF_INTRA_OP_THREADS of the sidecar (1 and the cores): p50 of heatmaps for all 14 labels at
    concurrency 1, through an API that uses that sidecar."""
    rows = []
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        settings = {"TF_INTRA_OP_THREADS": str(threads)}
        print(f"sidecar sweep {settings} ...", flush=True)
        sidecar = start_sidecar(model_dir, log_dir, timeout, settings)
        try:
            api = start_api(model_dir, onnx_dir, sidecar.url, log_dir)
            try:
                with RssSampler(sidecar) as rss:
                    result = load(
                        api,
                        image,
                        concurrency=1,
                        requests=requests,
                        warmup=2,
                        params={"heatmaps": "all"},
                        count_field="heatmap_engine",
                    )
            finally:
                api.stop()
        finally:
            sidecar.stop()
        rows.append(
            {
                "settings": settings,
                "p50_heatmaps_all_ms": result.summary()["p50_ms"],
                "engines": result.field_counts,
                "sidecar_rss_peak_mb": round(rss.peak_mb or 0, 1),
            }
        )
    return rows


def format_sidecar_sweep(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["sidecar threads (heatmaps=all, concurrency 1):"]
    for entry in rows:
        lines.append(
            f"  {entry['settings']}: p50 {entry['p50_heatmaps_all_ms']} ms, engines {entry['engines']}, "
            f"sidecar RSS {entry['sidecar_rss_peak_mb']} MB"
        )
    return lines
