"""CPU time per inference of the served model under each onnxruntime setting the API offers:
precision, intra-op threads, spinning. CPU time of the whole process (every pool thread), so the
figures hold on a busy machine, where wall time does not; the median wall time beside it holds
only on an idle one.

    .venv/bin/python -m bench.ort_cpu [--repeats 40]
"""

import argparse
import resource
import statistics
import time
from pathlib import Path

from cxr.imaging import decode_image
from cxr.onnx_manifest import load_manifest
from service.api.model_runtime import Precision, load_model_runtime


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ort_cpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--image", type=Path, default=Path("tests/fixtures/00000001_000.png"))
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    pixels = decode_image(args.image.read_bytes()).pixels
    precisions: list[Precision] = ["fp32", "int8"] if load_manifest(args.onnx_dir).quantization else ["fp32"]
    for precision in precisions:
        for threads, spinning in ((1, False), (2, True), (2, False)):
            runtime = load_model_runtime(
                args.model_dir, args.onnx_dir, threads, 1, precision=precision, allow_spinning=spinning
            )
            tensor = runtime.preprocess(pixels)
            for _ in range(3):
                runtime.predict(tensor)
            before, walls = process_cpu_seconds(), []
            for _ in range(args.repeats):
                started = time.perf_counter()
                runtime.predict(tensor)
                walls.append(time.perf_counter() - started)
            per_inference = (process_cpu_seconds() - before) * 1000.0 / args.repeats
            print(
                f"{precision} threads={threads} spinning={spinning}: {per_inference:.1f} ms CPU per "
                f"inference, {statistics.median(walls) * 1000.0:.1f} ms wall (median)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
