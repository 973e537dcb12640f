"""`make bench`: one run measuring the service side by side with its baselines, each ratio with its target.

    python -m bench --model-dir MODEL_DIR --onnx-dir BUILD_DIR [--duration 20] [--sweep]

(a) throughput at concurrency 8: the service vs the naive baseline (bench/baseline_app.py: the same
    Keras model behind FastAPI, model.predict per request)                           target >= 3x
(b) probabilities-only p50 at concurrency 1: the service vs bare in-process decode + preprocess +
    onnxruntime on the same image                                                    target <= 1.2x
(c) p50 of a request with heatmaps for all 14 labels vs for 1 label                  target <= 2x
(d) int8 vs fp32 (when the export wrote model.int8.onnx): latency and the AUROC change
memory: the API's RSS (VmRSS) sampled during the load of (a)                         target <= 600 MB
        the sidecar's RSS during (c), reported
batch: `python -m service.batch` images/s vs bare onnxruntime on the same files     target >= 0.9x
--sweep: the API's serving settings (ORT_INTRA_OP_THREADS x MAX_CONCURRENT_INFERENCES) and the
         micro-batching headroom (onnxruntime per image at batch 1, 2, 4, 8).

Services are started as subprocesses on free ports; results go to bench-results/ as JSON.
Figures taken while something else loads the machine are skewed: the run records the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, merge, run_load
from bench.procs import REPO, RssSampler, Service, free_port, start

PREDICT = "/v1/predict"
ROUNDS = 2  # each comparison alternates its sides this many times


# --- Bare in-process references ---------------------------------------------------------------------


class BareOnnx:
    """Bare onnxruntime: a default InferenceSession and the shared preprocessing, nothing else."""

    def __init__(self, model_dir: Path, onnx_dir: Path) -> None:
        import onnxruntime as ort

        from cxr.model_card import load_model_card
        from cxr.onnx_manifest import load_manifest

        self.card = load_model_card(model_dir)
        path = onnx_dir / load_manifest(onnx_dir).onnx_file
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def score(self, data: bytes) -> Any:
        from cxr.preprocessing import preprocess_bytes

        normalisation = self.card.normalisation
        tensor = preprocess_bytes(data, self.card.input_size, normalisation.mean, normalisation.std)
        return self.session.run(["probabilities"], {"input": tensor[None]})[0]


def timed_ms(call: Callable[[], object], repeats: int, warm_up: int = 3) -> list[float]:
    """Milliseconds of each of `repeats` calls, after `warm_up` untimed ones."""
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def bare_latency_ms(bare: BareOnnx, image: bytes, repeats: int) -> list[float]:
    """decode + preprocess + onnxruntime, one image at a time, in this process."""
    return timed_ms(lambda: bare.score(image), repeats)


def int8_comparison(
    model_dir: Path, onnx_dir: Path, image: bytes, threads: int, repeats: int
) -> dict[str, Any]:
    from cxr.onnx_manifest import load_manifest
    from service.batch import OnnxScorer

    quantization = load_manifest(onnx_dir).quantization
    if quantization is None:
        return {"available": False, "note": "no model.int8.onnx: export with --quantize int8 to measure (d)"}
    result: dict[str, Any] = {"available": True}
    for name, int8 in (("fp32", False), ("int8", True)):
        scorer = OnnxScorer(model_dir, onnx_dir, int8=int8, threads=threads)
        tensor = scorer.preprocess(image)[None]
        times = timed_ms(functools.partial(scorer.predict, tensor), repeats)
        result[f"{name}_p50_ms"] = round(statistics.median(times), 2)
    result["speedup"] = round(result["fp32_p50_ms"] / result["int8_p50_ms"], 3)
    result["auroc_fp32"] = quantization.auroc_fp32
    result["auroc_int8"] = quantization.auroc_int8
    if quantization.auroc_fp32 is not None and quantization.auroc_int8 is not None:
        result["auroc_change"] = round(quantization.auroc_int8 - quantization.auroc_fp32, 4)
    result["auroc_evaluated_on"] = quantization.evaluated_on
    return result


def micro_batching_headroom(model_dir: Path, onnx_dir: Path, image: bytes, threads: int) -> dict[str, float]:
    """onnxruntime ms per image at batch sizes 1, 2, 4, 8: what a micro-batching API could gain."""
    import numpy as np

    from service.batch import OnnxScorer

    scorer = OnnxScorer(model_dir, onnx_dir, threads=threads)
    tensor = scorer.preprocess(image)
    out = {}
    for size in (1, 2, 4, 8):
        batch = np.repeat(tensor[None], size, axis=0)
        scorer.predict(batch)
        times: list[float] = []
        deadline = time.perf_counter() + 4.0
        while time.perf_counter() < deadline or len(times) < 5:
            started = time.perf_counter()
            scorer.predict(batch)
            times.append(time.perf_counter() - started)
        out[f"batch_{size}_ms_per_image"] = round(statistics.median(times) * 1000.0 / size, 2)
    return out


def batch_scoring(
    model_dir: Path, onnx_dir: Path, images: list[Path], copies: int, threads: int
) -> dict[str, Any]:
    """The batch pipeline (service.batch.score: decode thread pool + batched onnxruntime) vs bare
    onnxruntime in a sequential loop (read, decode, preprocess, a default session, batch of 1)."""
    import numpy as np

    from service.batch import Item, OnnxScorer, ScoreWriter, score

    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for copy in range(copies):
            for image in images:
                shutil.copy(image, folder / f"{copy:03d}_{image.name}")
        files = sorted(folder.iterdir())

        bare = BareOnnx(model_dir, onnx_dir)
        bare.score(files[0].read_bytes())
        started = time.perf_counter()
        for file in files:
            bare.score(file.read_bytes())
        bare_seconds = time.perf_counter() - started
        del bare

        scorer = OnnxScorer(model_dir, onnx_dir, threads=threads)
        scorer.predict(scorer.preprocess(files[0].read_bytes())[None])

        # Model only, inputs already decoded: the ceiling of any pipeline on this machine.
        tensors = np.stack([scorer.preprocess(file.read_bytes()) for file in files])
        started = time.perf_counter()
        for first in range(0, len(tensors), 16):
            scorer.predict(tensors[first : first + 16])
        model_only_seconds = time.perf_counter() - started

        writer = ScoreWriter(Path(tmp) / "scores.csv", scorer.card, resume=False)
        try:
            summary = score(scorer, [Item(file.name, file) for file in files], writer, progress=False)
        finally:
            writer.close()
        if summary.failed or summary.scored != len(files):
            raise RuntimeError(f"batch scoring failed on {summary.failed}")
    n = len(files)
    return {
        "images": n,
        "batch_tool_images_per_s": round(summary.images_per_second, 2),
        "bare_sequential_images_per_s": round(n / bare_seconds, 2),
        "model_only_images_per_s": round(n / model_only_seconds, 2),
        "note": "model loading excluded; model-only uses the batch tool's session on decoded inputs",
    }


# --- Services ----------------------------------------------------------------------------------------


def start_sidecar(model_dir: Path, log_dir: Path, timeout: float) -> Service:
    port = free_port()
    return start(
        "sidecar",
        ["-m", "service.sidecar"],
        {"GRADCAM_HOST": "127.0.0.1", "GRADCAM_PORT": str(port), "MODEL_DIR": str(model_dir)},
        f"http://127.0.0.1:{port}",
        log_dir,
        ready_path="/readyz",
        timeout=timeout,
    )


def start_api(
    model_dir: Path, onnx_dir: Path, sidecar_url: str, log_dir: Path, settings: dict[str, str] | None = None
) -> Service:
    port = free_port()
    env = {
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "GRADCAM_URL": sidecar_url,
        "API_KEYS": "",
        "LOG_LEVEL": "WARNING",
        **(settings or {}),
    }
    name = "api" + "".join(f"-{value}" for value in (settings or {}).values())
    return start(name, ["-m", "service.api"], env, f"http://127.0.0.1:{port}", log_dir, ready_path="/readyz")


def start_baseline(model_dir: Path, log_dir: Path, timeout: float) -> Service:
    port = free_port()
    return start(
        "baseline",
        ["-m", "bench.baseline_app", "--model-dir", str(model_dir), "--port", str(port)],
        {},
        f"http://127.0.0.1:{port}",
        log_dir,
        timeout=timeout,
    )


def load(service: Service, image: bytes, **kwargs: Any) -> LoadResult:
    result = run_load(service.url + PREDICT, image, "image.png", **kwargs)
    if result.failures:
        print(f"  ! {service.name}: {result.failures} failed requests {result.errors}", file=sys.stderr)
    return result


# --- Report ------------------------------------------------------------------------------------------


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "MET" if met else "NOT MET"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "models/chexnet-densenet121"))
    )
    parser.add_argument("--onnx-dir", type=Path, default=Path(os.environ.get("ONNX_DIR", "build")))
    parser.add_argument("--image", type=Path, default=REPO / "tests" / "fixtures" / "00000001_000.png")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each throughput run (a)")
    parser.add_argument("--requests", type=int, default=60, help="requests of each latency run (b), (c)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--batch-copies", type=int, default=16, help="copies of the 4 fixtures for the batch run"
    )
    parser.add_argument("--sweep", action="store_true", help="also measure the API's serving settings")
    parser.add_argument(
        "--skip-baseline", action="store_true", help="no naive Keras baseline (no TensorFlow)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument(
        "--start-timeout", type=float, default=600.0, help="seconds a server may take to start"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)

    image = args.image.read_bytes()
    threads = int(os.environ.get("ORT_INTRA_OP_THREADS") or len(os.sched_getaffinity(0)))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = args.out / f"logs-{stamp}"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "model_dir": str(args.model_dir),
        "onnx_dir": str(args.onnx_dir),
        "image": args.image.name,
        "ort_intra_op_threads": threads,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    print(f"machine: {results['machine']}")
    if results["machine"]["load_average_at_start"][0] > 0.5:
        print("  ! the machine is busy (load average above 0.5): figures are skewed, re-run when idle")

    print("batch scoring vs bare onnxruntime ...", flush=True)
    fixtures = sorted((REPO / "tests" / "fixtures").glob("*.png"))
    results["batch"] = batch_scoring(args.model_dir, args.onnx_dir, fixtures, args.batch_copies, threads)

    services: list[Service] = []
    try:
        print("starting sidecar, API and the naive baseline ...", flush=True)
        sidecar = start_sidecar(args.model_dir, log_dir, args.start_timeout)
        services.append(sidecar)
        api = start_api(args.model_dir, args.onnx_dir, sidecar.url, log_dir)
        services.append(api)
        baseline: Service | None = None
        if not args.skip_baseline:
            try:
                baseline = start_baseline(args.model_dir, log_dir, args.start_timeout)
                services.append(baseline)
            except RuntimeError as error:  # reported as "not measured", the other figures still count
                print(f"  ! {error}", file=sys.stderr)
                results["baseline_error"] = str(error).splitlines()[0]

        # Each comparison alternates its two sides (A B A B), so a change in the machine's load
        # during the run falls on both.
        print("(b) service p50 at concurrency 1 vs bare in-process ...", flush=True)
        bare = BareOnnx(args.model_dir, args.onnx_dir)
        bare_times: list[float] = []
        singles: list[LoadResult] = []
        for _ in range(ROUNDS):
            bare_times += bare_latency_ms(bare, image, args.requests // ROUNDS)
            singles.append(
                load(
                    api,
                    image,
                    concurrency=1,
                    requests=args.requests // ROUNDS,
                    warmup=3,
                    params={"heatmaps": "none"},
                )
            )
        del bare
        results["bare"] = {"p50_ms": round(statistics.median(bare_times), 2), "repeats": len(bare_times)}
        results["service_c1_probabilities"] = merge(singles).summary()

        print(f"(a) throughput at concurrency {args.concurrency}: service vs naive baseline ...", flush=True)
        served: list[LoadResult] = []
        naive: list[LoadResult] = []
        api_peaks: list[float] = []
        baseline_peaks: list[float] = []
        for _ in range(ROUNDS):
            with RssSampler(api) as api_rss:
                served.append(
                    load(
                        api,
                        image,
                        concurrency=args.concurrency,
                        duration=args.duration / ROUNDS,
                        params={"heatmaps": "none"},
                    )
                )
            api_peaks.append(api_rss.peak_mb or 0.0)
            if baseline is not None:
                with RssSampler(baseline) as baseline_rss:
                    naive.append(
                        load(baseline, image, concurrency=args.concurrency, duration=args.duration / ROUNDS)
                    )
                baseline_peaks.append(baseline_rss.peak_mb or 0.0)
        results["service_throughput"] = merge(served).summary()
        results["api_rss_mb"] = {"peak_under_load": round(max(api_peaks), 1)}
        if naive:
            results["baseline_throughput"] = merge(naive).summary()
            results["baseline_rss_mb_peak"] = round(max(baseline_peaks), 1)
        if baseline is not None:
            baseline.stop()
            services.remove(baseline)

        print("(c) heatmaps for 14 labels vs 1 label ...", flush=True)
        ones: list[LoadResult] = []
        everys: list[LoadResult] = []
        with RssSampler(sidecar) as sidecar_rss:
            for _ in range(ROUNDS):
                for spec, into in (("top:1", ones), ("all", everys)):
                    into.append(
                        load(
                            api,
                            image,
                            concurrency=1,
                            requests=max(5, args.requests // (2 * ROUNDS)),
                            warmup=2,
                            params={"heatmaps": spec},
                            count_field="heatmap_engine",
                        )
                    )
        results["heatmaps_1_label"] = merge(ones).summary()
        results["heatmaps_14_labels"] = merge(everys).summary()
        results["sidecar_rss_mb_peak"] = round(sidecar_rss.peak_mb or 0, 1)
        with RssSampler(api) as api_rss_heatmaps:
            heat_load = load(
                api,
                image,
                concurrency=args.concurrency,
                duration=max(5.0, args.duration / 2),
                params={"heatmaps": "all"},
                count_field="heatmap_engine",
            )
        results["service_throughput_heatmaps_all"] = heat_load.summary()
        results["api_rss_mb"]["peak_under_heatmap_load"] = round(api_rss_heatmaps.peak_mb or 0, 1)

        if args.sweep:
            api.stop()
            services.remove(api)
            results["sweep"] = sweep(args, image, sidecar.url, log_dir)
    finally:
        for service in reversed(services):
            service.stop()

    print("(d) int8 vs fp32 ...", flush=True)
    results["int8"] = int8_comparison(args.model_dir, args.onnx_dir, image, threads, args.requests)
    if args.sweep:
        results["micro_batching"] = micro_batching_headroom(args.model_dir, args.onnx_dir, image, threads)

    targets = report(results)
    results["targets"] = targets
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {path}")
    if args.strict and any(t["verdict"] == "NOT MET" for t in targets):
        return 1
    return 0


def sweep(args: argparse.Namespace, image: bytes, sidecar_url: str, log_dir: Path) -> list[dict[str, Any]]:
    cores = len(os.sched_getaffinity(0))
    rows = []
    for ort_threads in sorted({1, cores}):
        for concurrent in (1, 2, 4):
            settings = {
                "ORT_INTRA_OP_THREADS": str(ort_threads),
                "MAX_CONCURRENT_INFERENCES": str(concurrent),
            }
            print(f"sweep {settings} ...", flush=True)
            api = start_api(args.model_dir, args.onnx_dir, sidecar_url, log_dir, settings)
            try:
                single = load(
                    api,
                    image,
                    concurrency=1,
                    requests=max(20, args.requests // 2),
                    warmup=3,
                    params={"heatmaps": "none"},
                )
                with RssSampler(api) as rss:
                    loaded = load(
                        api,
                        image,
                        concurrency=args.concurrency,
                        duration=max(8.0, args.duration / 2),
                        params={"heatmaps": "none"},
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


def report(results: dict[str, Any]) -> list[dict[str, Any]]:
    service_rps = results["service_throughput"]["throughput_rps"]
    baseline_rps = results.get("baseline_throughput", {}).get("throughput_rps")
    service_p50 = results["service_c1_probabilities"]["p50_ms"]
    bare_p50 = results["bare"]["p50_ms"]
    one_p50 = results["heatmaps_1_label"]["p50_ms"]
    all_p50 = results["heatmaps_14_labels"]["p50_ms"]
    rss = results["api_rss_mb"]["peak_under_load"]
    batch = results["batch"]
    int8 = results["int8"]
    rows = [
        {
            "id": "a",
            "what": "throughput c=8, service / naive Keras baseline",
            "detail": f"{fmt(service_rps, ' req/s', 2)} vs {fmt(baseline_rps, ' req/s', 2)}",
            "value": ratio(service_rps, baseline_rps),
            "target": ">= 3x",
            "verdict": verdict(ratio(service_rps, baseline_rps), 3.0, True),
        },
        {
            "id": "b",
            "what": "p50 c=1 probabilities only, service / bare in-process",
            "detail": f"{fmt(service_p50, ' ms')} vs {fmt(bare_p50, ' ms')}",
            "value": ratio(service_p50, bare_p50),
            "target": "<= 1.2x",
            "verdict": verdict(ratio(service_p50, bare_p50), 1.2, False),
        },
        {
            "id": "c",
            "what": "p50 c=1 heatmaps 14 labels / 1 label",
            "detail": f"{fmt(all_p50, ' ms')} vs {fmt(one_p50, ' ms')}; heatmap engines: "
            f"14 labels {results['heatmaps_14_labels'].get('field_counts')}, "
            f"1 label {results['heatmaps_1_label'].get('field_counts')}",
            "value": ratio(all_p50, one_p50),
            "target": "<= 2x",
            "verdict": verdict(ratio(all_p50, one_p50), 2.0, False),
        },
    ]
    if int8.get("available"):
        rows.append(
            {
                "id": "d",
                "what": "int8 / fp32 onnxruntime latency (speed-up), AUROC change",
                "detail": f"{fmt(int8['int8_p50_ms'], ' ms')} vs {fmt(int8['fp32_p50_ms'], ' ms')}, "
                f"x{int8['speedup']:.2f} faster, "
                f"mean AUROC {int8.get('auroc_fp32')} -> {int8.get('auroc_int8')} "
                f"(change {int8.get('auroc_change')})",
                "value": int8["speedup"],
                "target": "reported (no target)",
                "verdict": "reported",
            }
        )
    else:
        rows.append(
            {
                "id": "d",
                "what": "int8 vs fp32",
                "detail": int8["note"],
                "value": None,
                "target": "-",
                "verdict": "not measured",
            }
        )
    rows += [
        {
            "id": "memory",
            "what": "API RSS peak under load (c=8)",
            "detail": f"{fmt(rss, ' MB')}; "
            f"with heatmaps {fmt(results['api_rss_mb'].get('peak_under_heatmap_load'), ' MB')}; "
            f"sidecar peak {fmt(results.get('sidecar_rss_mb_peak'), ' MB')}",
            "value": rss,
            "target": "<= 600 MB",
            "verdict": verdict(rss, 600.0, False),
        },
        {
            "id": "batch",
            "what": "batch scoring / bare sequential onnxruntime (images/s)",
            "detail": f"{batch['batch_tool_images_per_s']} vs {batch['bare_sequential_images_per_s']} img/s "
            f"({batch['images']} images; model-only ceiling {batch['model_only_images_per_s']} img/s)",
            "value": ratio(batch["batch_tool_images_per_s"], batch["bare_sequential_images_per_s"]),
            "target": ">= 0.9x",
            "verdict": verdict(
                ratio(batch["batch_tool_images_per_s"], batch["bare_sequential_images_per_s"]), 0.9, True
            ),
        },
    ]
    print("\n" + "=" * 100)
    print(f"{'':9}{'measure':<56} {'ratio':>7}  {'target':<12} verdict")
    print("-" * 100)
    for row in rows:
        value = "-" if row["value"] is None else f"{row['value']:.2f}"
        print(
            f"({row['id']})".ljust(9) + f"{row['what']:<56} {value:>7}  {row['target']:<12} {row['verdict']}"
        )
        print(f"{'':9}{row['detail']}")
    if "sweep" in results:
        print("-" * 100)
        print("serving settings (probabilities only):")
        for entry in results["sweep"]:
            print(
                f"  {entry['settings']}: p50 c=1 {fmt(entry['p50_c1_ms'], ' ms')}, "
                f"c={results['service_throughput']['concurrency']} "
                f"{fmt(entry['throughput_rps'], ' req/s', 2)} "
                f"(p95 {fmt(entry['p95_ms_loaded'], ' ms')}), RSS {fmt(entry['rss_peak_mb'], ' MB')}, "
                f"failures {entry['failures']}"
            )
    if "micro_batching" in results:
        print(
            f"micro-batching headroom (onnxruntime ms per image by batch size): {results['micro_batching']}"
        )
    print("=" * 100)
    return rows


if __name__ == "__main__":
    sys.exit(main())
