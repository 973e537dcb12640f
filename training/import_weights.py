"""`python -m training import-weights`: make a model folder from the course's weights file.

The course model (`pretrained_model.h5`) is DenseNet121 + global average pooling + Dense(14,
sigmoid) with its outputs in COURSE_LABELS order. The result is model.keras in canonical LABELS
order with a model card. Its thresholds are 0.5 until `python -m training.evaluate` chooses them
on a validation split (copy a splits.csv in with --splits-csv to evaluate on known images).
"""

import argparse
import datetime
import logging
import shutil
import sys
from pathlib import Path

from cxr.labels import LABELS
from cxr.model_card import ModelCard, Normalisation, TrainingData, save_model_card, sha256_file

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.keras"
SPLITS_FILE = "splits.csv"
# Mean and std of the greyscale [0, 1] pixels of the 388-image NIH sample (resized to 320 px, the
# course's input size): the course standardised its inputs with statistics of NIH images too.
DEFAULT_NORMALISATION = Normalisation(mean=0.524, std=0.260)
UNEVALUATED_THRESHOLD = 0.5
UNEVALUATED_THRESHOLD_RULE = (
    "0.5 for every label: imported weights, not yet evaluated (training.evaluate chooses Youden's J "
    "thresholds on the validation split)"
)


def import_weights(
    weights_file: str | Path,
    out_dir: str | Path,
    input_size: int,
    normalisation: Normalisation = DEFAULT_NORMALISATION,
    splits_csv: str | Path | None = None,
    name: str = "chexnet-densenet121-course",
    version: str = "1.0.0",
) -> ModelCard:
    """Write OUT/model.keras (canonical label order) and OUT/model_card.json; return the card."""
    weights_file = Path(weights_file)
    if not weights_file.is_file():
        raise FileNotFoundError(f"course weights file {weights_file} not found")
    from training.model import LAST_CONV_LAYER, import_course_weights  # TensorFlow loads here

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = import_course_weights(weights_file, input_size)
    weights_path = out / WEIGHTS_FILE
    model.save(weights_path)
    if splits_csv is not None:
        shutil.copyfile(splits_csv, out / SPLITS_FILE)
    card = ModelCard(
        name=name,
        version=version,
        created=datetime.date.today().isoformat(),
        labels=list(LABELS),
        input_size=input_size,
        normalisation=normalisation,
        thresholds=dict.fromkeys(LABELS, UNEVALUATED_THRESHOLD),
        threshold_rule=UNEVALUATED_THRESHOLD_RULE,
        last_conv_layer=LAST_CONV_LAYER,
        weights_file=WEIGHTS_FILE,
        sha256=sha256_file(weights_path),
        training=TrainingData(
            dataset=f"imported: {weights_file.name} (course model, NIH ChestX-ray14)",
            split_rule="trained outside this project; its splits are unknown",
            n_train=0,
            n_validation=0,
            n_test=0,
            seed=0,
            recipe={"imported_from": weights_file.name, "source_sha256": sha256_file(weights_file)},
        ),
        metrics=[],
    )
    save_model_card(card, out)
    log.info("imported %s into %s (input %d px)", weights_file, out, input_size)
    return card


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training import-weights",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "weights", help="the course's weights file (legacy Keras .h5, e.g. pretrained_model.h5)"
    )
    parser.add_argument("--out", required=True, help="output folder: model.keras, model_card.json")
    parser.add_argument("--input-size", type=int, required=True, help="square input side in pixels (>= 32)")
    parser.add_argument("--normalisation-mean", type=float, help=f"default {DEFAULT_NORMALISATION.mean}")
    parser.add_argument("--normalisation-std", type=float, help=f"default {DEFAULT_NORMALISATION.std}")
    parser.add_argument("--splits-csv", help="splits.csv (Image, PatientId, split) to evaluate the model on")
    parser.add_argument("--name", default="chexnet-densenet121-course")
    parser.add_argument("--version", default="1.0.0")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if (args.normalisation_mean is None) != (args.normalisation_std is None):
        parser.error("give both --normalisation-mean and --normalisation-std, or neither")
    if args.input_size < 32:
        parser.error("--input-size must be at least 32 (DenseNet121's smallest input)")
    if args.normalisation_std is not None and args.normalisation_std <= 0:
        parser.error("--normalisation-std must be positive")
    normalisation = (
        DEFAULT_NORMALISATION
        if args.normalisation_mean is None
        else Normalisation(mean=args.normalisation_mean, std=args.normalisation_std)
    )
    card = import_weights(
        args.weights, args.out, args.input_size, normalisation, args.splits_csv, args.name, args.version
    )
    print(f"wrote {Path(args.out) / WEIGHTS_FILE} (sha256 {card.sha256}) and its model card")
    return 0


if __name__ == "__main__":
    sys.exit(main())
