"""export.quantize: split selection, and an int8 build judged against fp32 in the manifest."""

import csv
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from cxr.model_card import load_model_card, sha256_file
from cxr.onnx_manifest import (
    FEATURE_MAP_OUTPUT,
    INPUT_NAME,
    INT8_ONNX_FILE,
    ONNX_FILE,
    PROBABILITIES_OUTPUT,
    load_manifest,
)
from export.pipeline import ExportOptions, QuantizeOptions, publish
from export.quantize import QuantizationError, split_records


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
    tiny_model_dir: Path,
    two_outputs: keras.Model,
    fixture_images: list[Path],
    fixture_inputs: np.ndarray,
    labels_csv: Path,
    tmp_path: Path,
) -> None:
    """Calibrated on the two "train" fixtures, scored on the two "test" ones (see conftest.py)."""
    card = load_model_card(tiny_model_dir)
    out_dir = tmp_path / "build"
    options = ExportOptions(
        parity_images=fixture_images, quantize=QuantizeOptions(labels_csv, images_dir=labels_csv.parent)
    )

    manifest = publish(out_dir, onnx.load(exported / ONNX_FILE), two_outputs, card, tiny_model_dir, options)

    quantization = manifest.quantization
    assert quantization is not None and load_manifest(out_dir) == manifest
    assert quantization.file == INT8_ONNX_FILE
    assert quantization.sha256 == sha256_file(out_dir / INT8_ONNX_FILE)
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
