"""Where one request's in-process time goes: decode, out-of-distribution guard, preprocessing,
onnxruntime. Each stage runs on its own input, repeated; medians printed in ms.

    .venv/bin/python -m bench.stages [--image tests/fixtures/00000001_000.png] [--repeats 50]
"""

import argparse
import statistics
from pathlib import Path

from bench.__main__ import timed_ms
from cxr.imaging import decode_image
from service.api.model_runtime import load_model_runtime
from service.api.ood import out_of_distribution_reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--image", type=Path, default=Path("tests/fixtures/00000001_000.png"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    runtime = load_model_runtime(args.model_dir, args.onnx_dir)
    data = args.image.read_bytes()
    decoded = decode_image(data)
    tensor = runtime.preprocess(decoded.pixels)
    stages = {
        "decode": lambda: decode_image(data),
        "out-of-distribution guard": lambda: out_of_distribution_reasons(decoded),
        "preprocess": lambda: runtime.preprocess(decoded.pixels),
        "onnxruntime (both outputs, 1 thread)": lambda: runtime.predict(tensor),
    }
    print(f"{args.image} {decoded.pixels.shape[1]}x{decoded.pixels.shape[0]}, {args.repeats} repeats")
    for name, call in stages.items():
        print(f"{name:40s} {statistics.median(timed_ms(call, args.repeats)):7.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
