"""Static int8 quantisation calibrated on training images, judged by AUROC and speed on test images.

Format QOperator (QLinearConv and friends written into the graph; uint8 activations, int8
per-channel weights, MinMax calibration), with each batch normalisation first written as a
depthwise convolution (export/batchnorm.py) so that every layer is quantised, and the tensors a
concatenation joins given one range (`shared_concatenation_ranges`). On model 2.1.0 (2-core Intel
Xeon with AVX-512 VNNI, 2026-12-06) `python -m export ... --quantize int8 --quant-format F
--dataset ../shared/data/nih --dataset ../shared/data/nih-extra` recorded 0.0198 s per image and a
mean AUROC of 0.7062 for QOperator, 0.0215 s and 0.7055 for QDQ (onnxruntime fusing each
QuantizeLinear/DequantizeLinear pair at session start); fp32 0.0511 s and 0.7052. On the AVX2 EPYC
host with the 128 px dev model and no depthwise rewrite, QDQ had been ahead (0.093 against 0.108
s). reduce_range (7-bit weights) because CPUs without VNNI can saturate the int16 intermediate
sums of full-range uint8 x int8 products.

The calibration writes the tensors' ranges (onnxruntime's calibration cache, about 90 kB);
`make export-int8` records them beside the model and their sha256 in its card, and an export
without the images (`make export`, the Docker image) quantises with them: the same int8 file.

The AUROC is compared on the test split: nothing is chosen on it (the format is fixed above), so
it stays the held-out estimate the model card reports; the validation split chose thresholds.
"""

import csv
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import TensorData, TensorsData, load_tensors_data, save_tensors_data
from onnxruntime.quantization.shape_inference import quant_pre_process

from cxr.model_card import ModelCard
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, PROBABILITIES_OUTPUT
from cxr.preprocessing import preprocess_bytes
from export.batchnorm import batch_normalization_as_depthwise
from training.data import Record, data_sources, labels_matrix, read_datasets
from training.metrics import mean_auroc

logger = logging.getLogger(__name__)

QUANT_FORMATS = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}
DEFAULT_QUANT_FORMAT = "qoperator"
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
    fp32_path: Path,
    int8_path: Path,
    ranges_path: Path,
    card: ModelCard,
    quant_format: str,
    calibration: Sequence[Path] | None = None,
) -> None:
    """Write the statically quantised model. With `calibration` images: calibrate (MinMax) on them
    and write the tensors' ranges to `ranges_path`; without: quantise with the ranges recorded
    there, which gives the same file again without the images."""
    if calibration is not None and not calibration:
        raise QuantizationError("no calibration images")
    if calibration is None and not ranges_path.is_file():
        raise QuantizationError(f"{ranges_path}: no recorded int8 calibration ranges")
    with tempfile.TemporaryDirectory(prefix="cxr-quant-") as scratch:
        depthwise, prepared = Path(scratch) / "depthwise.onnx", Path(scratch) / "prepared.onnx"
        proto = onnx.load(fp32_path)
        batch_normalization_as_depthwise(proto)
        onnx.save(proto, depthwise)
        # Shape inference and graph folding first, as onnxruntime's quantisation guide asks. Symbolic
        # shape inference (sympy) is for dynamic shapes; only the batch axis is dynamic here.
        quant_pre_process(str(depthwise), str(prepared), skip_symbolic_shape=True)
        settings = {
            "quant_format": QUANT_FORMATS[quant_format],
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            "reduce_range": True,
        }
        if calibration is not None:
            # onnxruntime calibrates and writes the ranges to a cache file that does not exist yet
            # (the model it writes alongside is discarded: the ranges are adjusted first).
            logger.info("calibrating int8 (%s) on %d images", quant_format, len(calibration))
            calibrated = Path(scratch) / "calibrated.json"
            quantize_static(
                prepared,
                Path(scratch) / "unadjusted.onnx",
                ImageCalibration(calibration, card),
                calibration_cache_path=calibrated,
                **settings,
            )
            shutil.copyfile(calibrated, ranges_path)
        else:
            logger.info("int8 (%s) from the ranges recorded in %s", quant_format, ranges_path)
        graph, ranges = onnx.load(prepared), load_tensors_data(ranges_path)
        check_ranges_belong(graph, ranges, ranges_path)
        adjusted = Path(scratch) / "adjusted.json"
        save_tensors_data(shared_concatenation_ranges(graph, ranges), adjusted)
        quantize_static(prepared, int8_path, None, calibration_cache_path=adjusted, **settings)
    outputs = [node.name for node in _session(int8_path).get_outputs()]
    if outputs != [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT]:
        raise QuantizationError(f"{int8_path} has outputs {outputs}, expected those of {fp32_path}")


def check_ranges_belong(proto: onnx.ModelProto, ranges: TensorsData, ranges_path: Path) -> None:
    """Refuse ranges that name tensors the graph does not have: recorded for another graph (a
    tensor without a range would silently stay float). The names are the graph's structure, so
    a model.onnx whose constants differ in their last bits (another CPU) keeps them."""
    graph = proto.graph
    tensors = {name for node in graph.node for name in (*node.input, *node.output)}
    unknown = sorted(set(ranges.data) - tensors)
    if unknown or not ranges.data:
        example = f" (e.g. {unknown[0]})" if unknown else ""
        raise QuantizationError(
            f"{ranges_path}: ranges of {len(unknown)} of {len(ranges.data)} tensors this graph does not "
            f"have{example}; recorded for another model.onnx: calibrate again with `make export-int8`"
        )


def shared_concatenation_ranges(proto: onnx.ModelProto, ranges: TensorsData) -> TensorsData:
    """The calibrated ranges with every tensor joined by a Concat (its inputs and output, and so a
    whole DenseNet block) given one range, the union of theirs.

    With one scale and zero point on all sides, onnxruntime's QLinearConcat copies its inputs
    instead of requantising each. A DenseNet block's last concatenation already holds every earlier
    one, so the union is its range."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    for node in proto.graph.node:
        if node.op_type == "Concat":
            for name in node.input:
                parent[root(name)] = root(node.output[0])
    groups: dict[str, list[str]] = {}
    for name in ranges.data:
        groups.setdefault(root(name), []).append(name)
    data = dict(ranges.data)
    for names in groups.values():
        if len(names) > 1:
            lowest = min(np.min(ranges.data[name].range_value[0]) for name in names)
            highest = max(np.max(ranges.data[name].range_value[1]) for name in names)
            for name in names:
                data[name] = TensorData(
                    lowest=np.array([lowest], np.float32), highest=np.array([highest], np.float32)
                )
    return TensorsData(ranges.calibration_method, data)


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
