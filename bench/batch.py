"""Batch scoring (`python -m service.batch`) against bare onnxruntime, and the micro-batching
headroom (onnxruntime per image at batch 1, 2, 4, 8)."""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.references import BareOnnx
from bench.report import Comparison, ordered


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
    model_dir: Path, onnx_dir: Path, images: list[Path], copies: int, threads: int, rounds: int
) -> tuple[Comparison, dict[str, Any]]:
    """The batch command's pipeline (service.batch.score with its defaults: `threads` workers, each
    reading, decoding and scoring its own files) vs bare onnxruntime in a sequential loop (read,
    decode, preprocess, a default session, batch of 1), in rounds with the order flipped each round.
    Returns the comparison and the run's facts (image count, the model-only ceiling)."""

    from service.batch import Item, OnnxScorer, ScoreWriter, score

    comparison = Comparison(
        "batch", "batch scoring / bare sequential onnxruntime (images/s)", 0.9, True, " img/s"
    )
    with tempfile.TemporaryDirectory(prefix="cxr-bench-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for copy in range(copies):
            for image in images:
                shutil.copy(image, folder / f"{copy:03d}_{image.name}")
        files = sorted(folder.iterdir())
        n = len(files)

        bare = BareOnnx(model_dir, onnx_dir)
        bare.score(files[0].read_bytes())
        # As the command runs by default: batches of 1, one onnxruntime thread, a worker per core.
        scorer = OnnxScorer(model_dir, onnx_dir, threads=1)
        scorer.predict(scorer.preprocess(files[0].read_bytes())[None])

        def bare_rate() -> float:
            started = time.perf_counter()
            for file in files:
                bare.score(file.read_bytes())
            return n / (time.perf_counter() - started)

        def tool_rate(index: int) -> float:
            writer = ScoreWriter(Path(tmp) / f"scores-{index}.csv", scorer.card, resume=False)
            try:
                summary = score(
                    scorer, [Item(file.name, file) for file in files], writer, workers=threads, progress=False
                )
            finally:
                writer.close()
            if summary.failed or summary.scored != n:
                raise RuntimeError(f"batch scoring failed on {summary.failed}")
            return summary.images_per_second

        for index in range(rounds):
            rate = {
                side: bare_rate() if side == "bare" else tool_rate(index)
                for side in ordered(index, "tool", "bare")
            }
            comparison.add(round(rate["tool"], 2), round(rate["bare"], 2))

        # Model only, inputs already decoded, one run per core at a time: the pipeline's ceiling.
        tensors = [scorer.preprocess(file.read_bytes())[None] for file in files]
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(scorer.predict, tensors))
        model_only = round(n / (time.perf_counter() - started), 2)
    comparison.detail = f"{n} images a round; model-only ceiling {model_only} img/s"
    return comparison, {
        "images": n,
        "model_only_images_per_s": model_only,
        "note": "model loading excluded; model-only: the tool's session on decoded inputs, a run per core",
    }
