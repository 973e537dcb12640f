"""What decoding JPEGs at reduced scale (JPEG_REDUCED_DECODE) changes, on the shared NIH films
saved as JPEG: probabilities against the full-size decode (and, for scale, the full-size JPEG
against the PNG), the guard's flags, and CPU time of decode + guard + preprocessing.

    .venv/bin/python -m bench.jpeg_reduced [--images ../shared/data/nih/images] [--limit N]
"""

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.imaging import decode_image
from service.api.model_runtime import load_model_runtime
from service.api.ood import ANALYSIS_SIZE, out_of_distribution_reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.jpeg_reduced", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--images", type=Path, default=Path("../shared/data/nih/images"))
    parser.add_argument("--limit", type=int, default=0, help="first N films only (0: all)")
    parser.add_argument("--quality", type=int, default=95)
    args = parser.parse_args(argv)
    runtime = load_model_runtime(args.model_dir, args.onnx_dir)
    min_side = max(ANALYSIS_SIZE, runtime.input_size)
    files = sorted(args.images.glob("*.png"))[: args.limit or None]
    reduced_change: list[np.ndarray] = []
    jpeg_change: list[np.ndarray] = []
    flags = {"full": 0, "reduced": 0}
    cpu: dict[str, list[float]] = {"full": [], "reduced": []}
    for path in files:
        png = path.read_bytes()
        buffer = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("L").save(buffer, "JPEG", quality=args.quality)
        jpeg = buffer.getvalue()
        answers = {}
        for name, side in (("full", 0), ("reduced", min_side)):
            started = time.thread_time()
            decoded = decode_image(jpeg, min_side=side)
            reasons = out_of_distribution_reasons(decoded)
            tensor = runtime.preprocess(decoded.pixels)
            cpu[name].append(time.thread_time() - started)
            flags[name] += bool(reasons)
            answers[name] = runtime.predict(tensor).probabilities
        from_png = runtime.predict(runtime.preprocess(decode_image(png).pixels)).probabilities
        reduced_change.append(np.abs(answers["reduced"] - answers["full"]))
        jpeg_change.append(np.abs(answers["full"] - from_png))
    for label, changes in (
        ("reduced vs full-size JPEG", reduced_change),
        ("full-size JPEG vs PNG", jpeg_change),
    ):
        values = np.array(changes)
        print(
            f"{label}: probability change mean {values.mean():.5f}, "
            f"99th percentile {np.percentile(values, 99):.4f}, max {values.max():.4f}"
        )
    print(
        f"{len(files)} films, JPEG quality {args.quality}, reduced to at least {min_side} px; "
        f"guard flags: full {flags['full']}, reduced {flags['reduced']}; CPU of decode + guard + "
        f"preprocessing (median): full {1000 * np.median(cpu['full']):.1f} ms, "
        f"reduced {1000 * np.median(cpu['reduced']):.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
