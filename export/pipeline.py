"""The export run: Keras model folder -> ONNX build folder, published only when parity holds."""

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import keras
import onnx

from cxr.model_card import MODEL_CARD_FILE, ModelCard, load_model_card, sha256_file
from cxr.onnx_manifest import (
    CALIBRATION_RANGES_FILE,
    HEAD_FILE,
    INT8_ONNX_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    ExportManifest,
    Quantization,
)
from export.convert import (
    DEFAULT_OPSET,
    build_export_model,
    convert_to_onnx,
    feature_map_shape,
    load_keras_model,
)
from export.head import head_arrays, save_head
from export.parity import DEFAULT_TOLERANCE, check_parity, default_parity_images, measure_parity, open_session
from export.quantize import (
    CALIBRATION_SPLIT,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_QUANT_FORMAT,
    EVALUATION_SPLIT,
    QuantizationError,
    compare_models,
    quantize_int8,
    split_records,
)

logger = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")
SPLITS_FILE = "splits.csv"


@dataclass(frozen=True)
class QuantizeOptions:
    """With labels (a label table and/or the dataset folders the model trained on): calibrate on
    the training split and compare AUROC on the test split. Without: the ranges the card records."""

    labels_csv: Path | None = None
    images_dir: Path | None = None
    datasets: tuple[Path, ...] = ()
    quant_format: str = DEFAULT_QUANT_FORMAT
    max_calibration_images: int = DEFAULT_CALIBRATION_IMAGES

    @property
    def calibrates(self) -> bool:
        return self.labels_csv is not None or bool(self.datasets)


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    tolerance: float = DEFAULT_TOLERANCE
    parity_images: Sequence[Path] = field(default_factory=default_parity_images)
    quantize: QuantizeOptions | None = None


def export_model(model_dir: str | Path, out_dir: str | Path, options: ExportOptions) -> ExportManifest:
    """Verify, load, convert and publish; nothing is published when any step fails."""
    started = time.perf_counter()
    card = load_model_card(model_dir)
    model = load_keras_model(card, model_dir)
    two_outputs = build_export_model(model, card.last_conv_layer)
    proto = convert_to_onnx(two_outputs, card.input_size, options.opset)
    logger.info("converted in %.1f s", time.perf_counter() - started)
    manifest = publish(Path(out_dir), proto, two_outputs, card, Path(model_dir), options)
    logger.info("export finished in %.1f s", time.perf_counter() - started)
    return manifest


def publish(
    out_dir: Path,
    proto: onnx.ModelProto,
    two_outputs: keras.Model,
    card: ModelCard,
    model_dir: Path,
    options: ExportOptions,
) -> ExportManifest:
    """Write every file under a temporary name, prove parity, then rename them into place.

    The manifest is renamed last, so a reader that trusts the manifest never sees a partial build,
    and a failed export leaves no model.onnx that could pass for a checked one.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = _Staging(out_dir)
    try:
        onnx.save(proto, staged.path(ONNX_FILE))
        save_head(*head_arrays(two_outputs), staged.path(HEAD_FILE))
        parity = measure_parity(
            two_outputs, open_session(staged.path(ONNX_FILE)), options.parity_images, card, options.tolerance
        )
        check_parity(parity)
        quantization = None
        if options.quantize is not None:
            quantization = _quantize(staged, card, model_dir, options.quantize)
        manifest = ExportManifest(
            onnx_sha256=sha256_file(staged.path(ONNX_FILE)),
            head_sha256=sha256_file(staged.path(HEAD_FILE)),
            keras_sha256=card.sha256,
            input_size=card.input_size,
            feature_map_shape=feature_map_shape(two_outputs),
            opset=options.opset,
            versions={package: version(package) for package in VERSIONED_PACKAGES},
            parity=parity,
            quantization=quantization,
        )
        staged.path(MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        staged.commit(manifest_last=MANIFEST_FILE)
        if quantization is None:  # an int8 file from an earlier export no longer matches model.onnx
            (out_dir / INT8_ONNX_FILE).unlink(missing_ok=True)
            (out_dir / CALIBRATION_RANGES_FILE).unlink(missing_ok=True)
    finally:
        staged.discard()
    logger.info("published %s", ", ".join(str(out_dir / name) for name in staged.committed))
    return manifest


def _quantize(staged: "_Staging", card: ModelCard, model_dir: Path, options: QuantizeOptions) -> Quantization:
    if not options.calibrates:
        return _quantize_as_recorded(staged, card, model_dir, options.quant_format)
    splits = model_dir / SPLITS_FILE
    calibration = split_records(
        splits, options.labels_csv, options.images_dir, CALIBRATION_SPLIT, options.datasets
    )
    calibration = calibration[: options.max_calibration_images]
    evaluation = split_records(
        splits, options.labels_csv, options.images_dir, EVALUATION_SPLIT, options.datasets
    )
    quantize_int8(
        staged.path(ONNX_FILE),
        staged.path(INT8_ONNX_FILE),
        staged.path(CALIBRATION_RANGES_FILE),
        card,
        options.quant_format,
        [r.path for r in calibration],
    )
    comparison = compare_models(staged.path(ONNX_FILE), staged.path(INT8_ONNX_FILE), evaluation, card)
    logger.info(
        "int8 on %d %s images: mean AUROC %s -> %s, %.4f -> %.4f s/image",
        comparison.images,
        EVALUATION_SPLIT,
        comparison.auroc_fp32,
        comparison.auroc_int8,
        comparison.seconds_per_image_fp32,
        comparison.seconds_per_image_int8,
    )
    return Quantization(
        file=INT8_ONNX_FILE,
        sha256=sha256_file(staged.path(INT8_ONNX_FILE)),
        calibration_images=len(calibration),
        calibration_sha256=sha256_file(staged.path(CALIBRATION_RANGES_FILE)),
        auroc_fp32=comparison.auroc_fp32,
        auroc_int8=comparison.auroc_int8,
        evaluated_on=f"{EVALUATION_SPLIT} split of {SPLITS_FILE} ({comparison.images} images)",
        seconds_per_image_fp32=comparison.seconds_per_image_fp32,
        seconds_per_image_int8=comparison.seconds_per_image_int8,
    )


def _quantize_as_recorded(
    staged: "_Staging", card: ModelCard, model_dir: Path, quant_format: str
) -> Quantization:
    """The int8 model from the calibration ranges recorded beside the model (quantize_int8 checks
    that they are this graph's); the card's AUROC figures are kept when the file is the one they
    describe (same sha256), else left out."""
    card_path, ranges = model_dir / MODEL_CARD_FILE, model_dir / CALIBRATION_RANGES_FILE
    record = card.export.quantization if card.export is not None else None
    if record is None or record.calibration_sha256 is None:
        raise QuantizationError(
            f"{card_path}: records no int8 calibration; run `make export-int8` with the training data"
        )
    if not ranges.is_file() or sha256_file(ranges) != record.calibration_sha256:
        raise QuantizationError(
            f"{ranges}: missing, or not the calibration ranges the card records "
            f"(sha256 {record.calibration_sha256})"
        )
    shutil.copyfile(ranges, staged.path(CALIBRATION_RANGES_FILE))
    quantize_int8(
        staged.path(ONNX_FILE),
        staged.path(INT8_ONNX_FILE),
        staged.path(CALIBRATION_RANGES_FILE),
        card,
        quant_format,
    )
    sha256 = sha256_file(staged.path(INT8_ONNX_FILE))
    if sha256 == record.sha256:
        return record
    logger.warning("int8 file %s is not the recorded %s: its AUROC is not measured", sha256, record.sha256)
    return Quantization(
        file=INT8_ONNX_FILE,
        sha256=sha256,
        calibration_images=record.calibration_images,
        calibration_sha256=record.calibration_sha256,
    )


class _Staging:
    """Files written as `.<name>.partial` in the output folder and renamed atomically on commit."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.committed: list[str] = []
        self._names: list[str] = []

    def path(self, name: str) -> Path:
        if name not in self._names:
            self._names.append(name)
        return self.out_dir / f".{name}.partial"

    def commit(self, manifest_last: str) -> None:
        for name in sorted(self._names, key=lambda name: name == manifest_last):
            os.replace(self.path(name), self.out_dir / name)
            self.committed.append(name)

    def discard(self) -> None:
        for name in self._names:
            self.path(name).unlink(missing_ok=True)
