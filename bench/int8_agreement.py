"""How far the int8 model's probabilities and threshold decisions are from fp32's, on the model's
test split: the figures the README gives for serving int8 beside fp32 Grad-CAM heatmaps.

    .venv/bin/python -m bench.int8_agreement [--dataset ../shared/data/nih --dataset ../shared/data/nih-extra]
"""

import argparse
from pathlib import Path

import numpy as np

from cxr.imaging import decode_image
from cxr.labels import LABELS
from service.api.model_runtime import load_model_runtime
from training.data import data_sources, read_datasets
from training.evaluate import SPLITS_FILE, read_splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.int8_agreement", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        help="a dataset folder the model trained on (default: ../shared/data/nih and nih-extra)",
    )
    args = parser.parse_args(argv)
    folders = args.dataset or [Path("../shared/data/nih"), Path("../shared/data/nih-extra")]
    records = read_datasets(data_sources(None, None, folders))
    films = read_splits(args.model_dir / SPLITS_FILE, records)["test"]
    fp32 = load_model_runtime(args.model_dir, args.onnx_dir)
    int8 = load_model_runtime(args.model_dir, args.onnx_dir, precision="int8")
    thresholds = np.array([fp32.card.thresholds[label] for label in LABELS])
    pairs = []
    for film in films:
        tensor = fp32.preprocess(decode_image(film.path.read_bytes()).pixels)
        pairs.append((fp32.predict(tensor).probabilities, int8.predict(tensor).probabilities))
    first, second = (np.stack(side) for side in zip(*pairs, strict=True))
    difference = np.abs(first - second)
    flipped = int(np.sum((first >= thresholds) != (second >= thresholds)))
    print(
        f"{len(films)} test images: |int8 - fp32| mean {difference.mean():.4f}, max {difference.max():.4f}; "
        f"{flipped} of {first.size} threshold decisions differ"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
