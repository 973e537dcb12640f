"""export.quantize: split selection, and an int8 build judged against fp32 in the manifest."""

import csv
import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationMethod
from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

from cxr.model_card import ModelCard, load_model_card, save_model_card, sha256_file
from cxr.onnx_manifest import (
    CALIBRATION_RANGES_FILE,
    FEATURE_MAP_OUTPUT,
    INPUT_NAME,
    INT8_ONNX_FILE,
    ONNX_FILE,
    PROBABILITIES_OUTPUT,
    load_manifest,
)
from export.pipeline import ExportOptions, QuantizeOptions, publish
from export.quantize import QuantizationError, shared_concatenation_ranges, split_records


def write_splits(path: Path, rows: dict[str, str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image", "PatientId", "split"])
        writer.writerows([image, index, split] for index, (image, split) in enumerate(rows.items()))
    return path


@pytest.fixture
def labels_csv(fixture_images: list[Path]) -> Path:
    return fixture_images[0].parent / "labels_onehot.csv"


def test_split_records_keeps_one_split_with_labels(labels_csv: Path, tmp_path: Path) -> None:
    splits = write_splits(
        tmp_path / "splits.csv",
        {"00000001_000.png": "train", "00000404_000.png": "test", "00004001_000.png": "test"},
    )

    records = split_records(splits, labels_csv, labels_csv.parent, "test")

    assert [record.image for record in records] == ["00000404_000.png", "00004001_000.png"]
    assert all(record.path.is_file() for record in records)
    assert records[0].labels.shape == (14,)


def test_split_records_reads_the_dataset_folders_a_model_trained_on(labels_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dataset"
    (folder / "images").mkdir(parents=True)
    (folder / "images_labels.csv").write_bytes(labels_csv.read_bytes())
    for film in labels_csv.parent.glob("*.png"):
        (folder / "images" / film.name).symlink_to(film)
    splits = write_splits(tmp_path / "splits.csv", {"00000001_000.png": "train", "00000404_000.png": "test"})

    records = split_records(splits, None, None, "test", datasets=[folder])

    assert [record.image for record in records] == ["00000404_000.png"]
    assert records[0].path == folder / "images" / "00000404_000.png"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"00000001_000.png": "train"}, "no images in split 'test'"),
        ({"99999999_000.png": "test"}, "not in"),
    ],
)
def test_split_records_refuses_an_empty_or_unlabelled_split(
    labels_csv: Path, tmp_path: Path, rows: dict[str, str], message: str
) -> None:
    splits = write_splits(tmp_path / "splits.csv", rows)

    with pytest.raises(QuantizationError, match=message):
        split_records(splits, labels_csv, labels_csv.parent, "test")


@pytest.mark.slow
def test_int8_export_is_recorded_and_close_to_fp32(
    exported: Path,
    model_copy: Path,
    two_outputs: keras.Model,
    fixture_images: list[Path],
    fixture_inputs: np.ndarray,
    labels_csv: Path,
    tmp_path: Path,
) -> None:
    """Calibrated on the two "train" fixtures, scored on the two "test" ones (see conftest.py);
    then rebuilt without them from the ranges recorded beside the model: the same file."""
    card = load_model_card(model_copy)
    out_dir = tmp_path / "build"
    options = ExportOptions(
        parity_images=fixture_images, quantize=QuantizeOptions(labels_csv, images_dir=labels_csv.parent)
    )

    manifest = publish(out_dir, onnx.load(exported / ONNX_FILE), two_outputs, card, model_copy, options)

    quantization = manifest.quantization
    assert quantization is not None and load_manifest(out_dir) == manifest
    assert quantization.file == INT8_ONNX_FILE
    assert quantization.sha256 == sha256_file(out_dir / INT8_ONNX_FILE)
    assert quantization.calibration_sha256 == sha256_file(out_dir / CALIBRATION_RANGES_FILE)
    assert quantization.calibration_images == 2
    assert quantization.evaluated_on == "test split of splits.csv (2 images)"
    assert quantization.auroc_fp32 is not None and quantization.auroc_int8 is not None
    assert quantization.seconds_per_image_fp32 and quantization.seconds_per_image_int8
    int8 = ort.InferenceSession(str(out_dir / INT8_ONNX_FILE), providers=["CPUExecutionProvider"])
    fp32 = ort.InferenceSession(str(out_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [node.name for node in int8.get_outputs()] == [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT]
    # A loose bound: int8 error is not parity, but a broken calibration is off by far more than this.
    feed = {INPUT_NAME: fixture_inputs}
    assert np.max(np.abs(int8.run(None, feed)[0] - fp32.run(None, feed)[0])) < 0.05

    # The record `make export-int8` leaves: the manifest in the card, the ranges beside the model.
    recorded = save_recorded(model_copy, card.model_copy(update={"export": manifest}), out_dir)
    rebuilt = tmp_path / "rebuilt"
    from_record = ExportOptions(parity_images=fixture_images, quantize=QuantizeOptions())

    again = publish(rebuilt, onnx.load(exported / ONNX_FILE), two_outputs, recorded, model_copy, from_record)

    assert again.quantization == quantization  # the same int8 file, so its AUROC figures stand
    assert sha256_file(rebuilt / INT8_ONNX_FILE) == quantization.sha256

    graph = onnx.load(exported / ONNX_FILE)
    (model_copy / CALIBRATION_RANGES_FILE).write_text("{}")
    with pytest.raises(QuantizationError, match="not the calibration ranges the card records"):
        publish(tmp_path / "tampered", graph, two_outputs, recorded, model_copy, from_record)
    # Ranges of another graph, recorded as if they were this model's.
    one = np.array([1.0], np.float32)
    save_tensors_data(
        TensorsData(CalibrationMethod.MinMax, {"elsewhere": (-one, one)}), model_copy / "x.json"
    )
    (model_copy / "x.json").replace(model_copy / CALIBRATION_RANGES_FILE)
    other = quantization.model_copy(
        update={"calibration_sha256": sha256_file(model_copy / CALIBRATION_RANGES_FILE)}
    )
    foreign = recorded.model_copy(update={"export": manifest.model_copy(update={"quantization": other})})
    with pytest.raises(QuantizationError, match="tensors this graph does not have"):
        publish(tmp_path / "foreign", graph, two_outputs, foreign, model_copy, from_record)
    with pytest.raises(QuantizationError, match="records no int8 calibration"):
        publish(tmp_path / "none", graph, two_outputs, card, model_copy, from_record)


def save_recorded(model_dir: Path, card: ModelCard, out_dir: Path) -> ModelCard:
    save_model_card(card, model_dir)
    shutil.copyfile(out_dir / CALIBRATION_RANGES_FILE, model_dir / CALIBRATION_RANGES_FILE)
    return card


def test_tensors_joined_by_a_concatenation_share_one_range() -> None:
    """a, b -> Concat -> c; c, d -> Concat -> e: all five get the union; f, outside, keeps its own."""
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
            helper.make_node("Concat", ["c", "d"], ["e"], axis=1),
            helper.make_node("Relu", ["e"], ["f"]),
        ],
        "chain",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 2]) for name in "abd"],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 6])],
    )
    own = {
        "a": (-1.0, 2.0),
        "b": (0.0, 5.0),
        "c": (-1.0, 5.0),
        "d": (-3.0, 1.0),
        "e": (-3.0, 5.0),
        "f": (0.0, 5.0),
    }
    ranges = TensorsData(
        CalibrationMethod.MinMax,
        {
            name: (np.array([low], np.float32), np.array([high], np.float32))
            for name, (low, high) in own.items()
        },
    )

    shared = shared_concatenation_ranges(helper.make_model(graph), ranges)

    for name in "abcde":
        assert [float(value[0]) for value in shared.data[name].range_value] == [-3.0, 5.0], name
    assert shared.data["f"] is ranges.data["f"]
    assert [float(value[0]) for value in ranges.data["a"].range_value] == [-1.0, 2.0]  # not changed in place
