"""`python -m export.golden --model-dir DIR`: the model's probabilities on the committed fixture films.

Written beside the model (golden_probabilities.json) from the Keras weights through the shared
preprocessing; a test checks the service's answers against it to ~1e-4. A change to decoding or
preprocessing (a resize filter moves them by up to 0.024) then fails loudly instead of silently
skewing training and serving apart. A new model regenerates the file with this command.
"""

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import load_model_card
from export.convert import load_keras_model
from export.parity import default_parity_images, load_inputs

GOLDEN_FILE = "golden_probabilities.json"
log = logging.getLogger(__name__)


def golden_probabilities(model_dir: Path, images: Sequence[Path]) -> dict[str, object]:
    """{model sha256, input size, images: {file name: {label: probability}}}, from the Keras weights."""
    card = load_model_card(model_dir)
    model = load_keras_model(card, model_dir)
    probabilities = np.asarray(model(load_inputs(images, card), training=False), dtype=np.float64)
    return {
        "model": {"name": card.name, "version": card.version, "sha256": card.sha256},
        "input_size": card.input_size,
        "source": "Keras weights, cxr.preprocessing.preprocess_bytes; written by python -m export.golden",
        "images": {
            Path(image).name: {label: round(float(p), 7) for label, p in zip(LABELS, row, strict=True)}
            for image, row in zip(images, probabilities, strict=True)
        },
    }


def write_golden(model_dir: Path, images: Sequence[Path]) -> Path:
    path = model_dir / GOLDEN_FILE
    path.write_text(json.dumps(golden_probabilities(model_dir, images), indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.golden", description=__doc__)
    parser.add_argument("--model-dir", type=Path, required=True, help="model.keras and model_card.json")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = write_golden(args.model_dir, default_parity_images())
    print(f"golden probabilities: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
