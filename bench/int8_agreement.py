"""How far the int8 model's probabilities and threshold decisions are from fp32's, on the model's
test split: the figures the README gives for serving int8 beside fp32 Grad-CAM heatmaps.

    .venv/bin/python -m bench.int8_agreement [--images-dir ../shared/data/nih/images]
"""

import argparse
import csv
from pathlib import Path

import numpy as np

from cxr.imaging import decode_image
from cxr.labels import LABELS
from service.api.model_runtime import load_model_runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.int8_agreement", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--images-dir", type=Path, default=Path("../shared/data/nih/images"))
    args = parser.parse_args(argv)
    with open(args.model_dir / "splits.csv", newline="") as handle:
        images = [row["Image"] for row in csv.DictReader(handle) if row["split"] == "test"]
    fp32 = load_model_runtime(args.model_dir, args.onnx_dir)
    int8 = load_model_runtime(args.model_dir, args.onnx_dir, precision="int8")
    thresholds = np.array([fp32.card.thresholds[label] for label in LABELS])
    pairs = []
    for name in images:
        tensor = fp32.preprocess(decode_image((args.images_dir / name).read_bytes()).pixels)
        pairs.append((fp32.predict(tensor).probabilities, int8.predict(tensor).probabilities))
    first, second = (np.stack(side) for side in zip(*pairs, strict=True))
    difference = np.abs(first - second)
    flipped = int(np.sum((first >= thresholds) != (second >= thresholds)))
    print(
        f"{len(images)} test images: |int8 - fp32| mean {difference.mean():.4f}, max {difference.max():.4f}; "
        f"{flipped} of {first.size} threshold decisions differ"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
