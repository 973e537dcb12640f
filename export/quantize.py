"""Static int8 quantisation calibrated on training images, judged by AUROC and speed on test images.

Format QDQ (uint8 activations, int8 per-channel weights, MinMax calibration). onnxruntime's CPU
provider fuses each QuantizeLinear/DequantizeLinear pair into its integer kernels at session
start, and it recommends QDQ for CPU since 1.11. Measured here (2-core AVX2 EPYC under a training
load, 128 px dev model, batch 1, the three models interleaved, 60 runs each, median): fp32 0.19 s,
QDQ 0.093 s, QOperator 0.108 s; a second run gave 0.36 / 0.17 / 0.19 s. reduce_range (7-bit
weights) because CPUs without VNNI, like this one, can saturate the int16 intermediate sums of
full-range uint8 x int8 products.

The AUROC is compared on the test split: nothing is chosen on it (the format is fixed above), so
it stays the held-out estimate the model card reports; the validation split chose thresholds.
"""

import csv
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from cxr.model_card import ModelCard
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, PROBABILITIES_OUTPUT
from cxr.preprocessing import preprocess_bytes
from training.data import Record, data_sources, labels_matrix, read_datasets
from training.metrics import mean_auroc

logger = logging.getLogger(__name__)

QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
DEFAULT_QUANT_FORMAT = "qdq"
CALIBRATION_SPLIT = "train"
EVALUATION_SPLIT = "test"
# MinMax calibration keeps every intermediate tensor of every image (~600 in DenseNet121), so the
# count is bounded. onnxruntime's CalibMaxIntermediateOutputs is no way out: its flush discards the
# collected tensors without merging their ranges, so only the last partial group would count.
DEFAULT_CALIBRATION_IMAGES = 64


class QuantizationError(RuntimeError):
    """The int8 model cannot be built or judged from the data given."""


@dataclass(frozen=True)
class Comparison:
    """fp32 vs int8 on the same images in one run."""

    images: int
    auroc_fp32: float | None
    auroc_int8: float | None
    seconds_per_image_fp32: float
    seconds_per_image_int8: float


def split_records(
    splits_csv: str | Path,
    labels_csv: str | Path | None,
    images_dir: str | Path | None,
    split: str,
    datasets: Sequence[str | Path] = (),
) -> list[Record]:
    """Labelled records of one split of the model's splits.csv (Image, PatientId, split), from a
    label table and/or the dataset folders the model trained on."""
    with open(splits_csv, newline="") as handle:
        members = {row["Image"] for row in csv.DictReader(handle) if row["split"] == split}
    if not members:
        raise QuantizationError(f"{splits_csv} has no images in split {split!r}")
    sources = data_sources(labels_csv, images_dir, datasets)
    records = [record for record in read_datasets(sources) if record.image in members]
    missing = len(members) - len(records)
    if missing:
        named = ", ".join(str(source.labels_csv) for source in sources)
        raise QuantizationError(f"{missing} {split} images of {splits_csv} are not in {named}")
    return records


class ImageCalibration(CalibrationDataReader):
    """Feeds preprocessed images one at a time to the calibrator."""

    def __init__(self, paths: Sequence[Path], card: ModelCard) -> None:
        self._paths = list(paths)
        self._card = card
        self._iterator: Iterator[dict[str, np.ndarray]] = self._batches()

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        for path in self._paths:
            yield {INPUT_NAME: load_input(path, self._card)[np.newaxis]}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)

    def __len__(self) -> int:
        return len(self._paths)


def load_input(path: Path, card: ModelCard) -> np.ndarray:
    return preprocess_bytes(
        path.read_bytes(), card.input_size, card.normalisation.mean, card.normalisation.std
    )


def quantize_int8(
    fp32_path: Path, int8_path: Path, calibration: Sequence[Path], card: ModelCard, quant_format: str
) -> None:
    """Write the statically quantised model calibrated (MinMax) on `calibration` images."""
    if not calibration:
        raise QuantizationError("no calibration images")
    with tempfile.TemporaryDirectory(prefix="cxr-quant-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference and graph folding first, as onnxruntime's quantisation guide asks. Symbolic
        # shape inference (sympy) is for dynamic shapes; only the batch axis is dynamic here.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        logger.info("calibrating int8 (%s) on %d images", quant_format, len(calibration))
        quantize_static(
            prepared,
            int8_path,
            ImageCalibration(calibration, card),
            quant_format=QUANT_FORMATS[quant_format],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    outputs = [node.name for node in _session(int8_path).get_outputs()]
    if outputs != [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT]:
        raise QuantizationError(f"{int8_path} has outputs {outputs}, expected those of {fp32_path}")


def compare_models(
    fp32_path: Path, int8_path: Path, records: Sequence[Record], card: ModelCard
) -> Comparison:
    """Mean AUROC and seconds per image (batch 1) of both models, timed alternately per image.

    Alternating the two models image by image lets background load hit both alike.
    """
    if not records:
        raise QuantizationError("no evaluation images")
    sessions = [_session(fp32_path), _session(int8_path)]
    scores: list[list[np.ndarray]] = [[], []]
    seconds = [0.0, 0.0]
    warm_up = {INPUT_NAME: load_input(records[0].path, card)[np.newaxis]}
    for session in sessions:
        session.run([PROBABILITIES_OUTPUT], warm_up)
    for record in records:
        feed = {INPUT_NAME: load_input(record.path, card)[np.newaxis]}
        for index, session in enumerate(sessions):
            start = time.perf_counter()
            (probabilities,) = session.run([PROBABILITIES_OUTPUT], feed)
            seconds[index] += time.perf_counter() - start
            scores[index].append(probabilities[0])
    truth = labels_matrix(list(records))
    aurocs = [mean_auroc(truth, np.stack(model_scores)) for model_scores in scores]
    return Comparison(
        len(records), aurocs[0], aurocs[1], seconds[0] / len(records), seconds[1] / len(records)
    )


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
