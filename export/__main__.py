"""`python -m export --model-dir DIR --out BUILD_DIR`: ONNX export with a parity proof (see --help)."""

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path

# Before TensorFlow is imported (through export.pipeline): keep its C++ start-up chatter out of the log.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cxr.model_card import ModelCardMismatchError, load_model_card, save_model_card
from cxr.onnx_manifest import CALIBRATION_RANGES_FILE, ExportManifest
from export.convert import DEFAULT_OPSET, ConversionError
from export.head import HeadError
from export.parity import DEFAULT_TOLERANCE, ParityError, default_parity_images
from export.pipeline import ExportOptions, QuantizeOptions, export_model
from export.quantize import DEFAULT_CALIBRATION_IMAGES, DEFAULT_QUANT_FORMAT, QUANT_FORMATS, QuantizationError
from training.data import LabelTableError

FAILURES = (
    ModelCardMismatchError,
    ConversionError,
    HeadError,
    ParityError,
    QuantizationError,
    LabelTableError,
    FileNotFoundError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="model.keras, model_card.json, splits.csv"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="build folder: model.onnx, head.npz, manifest.json"
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest allowed |Keras - onnxruntime| probability on the parity images",
    )
    parser.add_argument(
        "--parity-images",
        type=Path,
        nargs="+",
        help="real radiographs for the parity check (default: tests/fixtures/*.png)",
    )
    parser.add_argument(
        "--quantize",
        choices=("int8",),
        help="also write model.int8.onnx (static): calibrated on the training split when labels "
        f"are given, else from the ranges the model card records ({CALIBRATION_RANGES_FILE})",
    )
    parser.add_argument(
        "--labels-csv",
        type=Path,
        help="labels of the splits.csv images: --quantize calibrates and compares AUROC on the test split",
    )
    parser.add_argument("--images-dir", type=Path, help="image folder (default: beside --labels-csv)")
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        default=[],
        metavar="FOLDER",
        help="a dataset folder the model trained on (instead of, or besides, --labels-csv); repeatable",
    )
    parser.add_argument("--quant-format", choices=sorted(QUANT_FORMATS), default=DEFAULT_QUANT_FORMAT)
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help=f"at most this many training images (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    parser.add_argument(
        "--record-in-card",
        action="store_true",
        help="also copy the manifest into the model card (the shipped model's export record)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def options_from(args: argparse.Namespace) -> ExportOptions:
    quantize = None
    if args.quantize:
        quantize = QuantizeOptions(
            args.labels_csv,
            args.images_dir,
            tuple(args.dataset),
            args.quant_format,
            args.calibration_images,
        )
    return ExportOptions(
        opset=args.opset,
        tolerance=args.tolerance,
        parity_images=args.parity_images or default_parity_images(),
        quantize=quantize,
    )


def summary(manifest: ExportManifest, out: Path, seconds: float) -> str:
    parity = manifest.parity
    lines = [
        f"exported {out / manifest.onnx_file} in {seconds:.0f} s (opset {manifest.opset}, "
        f"input {manifest.input_size} px, feature map {manifest.feature_map_shape})",
        f"parity on {len(parity.images)} images: max |dp| {parity.max_abs_diff_probabilities:.3g}, "
        f"max |dfeature| {parity.max_abs_diff_feature_map:.3g} (tolerance {parity.tolerance:.3g})",
    ]
    quant = manifest.quantization
    if quant is not None:
        lines.append(
            f"int8 {quant.file}: mean AUROC {_number(quant.auroc_fp32)} -> {_number(quant.auroc_int8)} "
            f"on {quant.evaluated_on}; {_number(quant.seconds_per_image_fp32)} -> "
            f"{_number(quant.seconds_per_image_int8)} s/image"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = options_from(args)
    started = time.perf_counter()
    try:
        manifest = export_model(args.model_dir, args.out, options)
    except FAILURES as error:
        print(f"export failed: {error}", file=sys.stderr)
        return 1
    print(summary(manifest, args.out, time.perf_counter() - started))
    if args.record_in_card:
        card = load_model_card(args.model_dir)
        ranges = args.out / CALIBRATION_RANGES_FILE
        if manifest.quantization is not None and ranges.resolve() != (args.model_dir / ranges.name).resolve():
            shutil.copyfile(ranges, args.model_dir / ranges.name)  # what the card's calibration_sha256 names
        print(f"recorded in {save_model_card(card.model_copy(update={'export': manifest}), args.model_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
