"""MODEL_PRECISION=int8 serves the export's int8 file, checked against its manifest, and the
second session used while other requests are in flight gives the same answers."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from api_helpers import MakeSettings, served, upload
from onnxruntime.quantization import QuantType, quantize_dynamic

from cxr.imaging import decode_image
from cxr.labels import LABELS
from cxr.model_card import MODEL_CARD_FILE, load_model_card
from cxr.onnx_manifest import CALIBRATION_RANGES_FILE, INT8_ONNX_FILE, MANIFEST_FILE, load_manifest
from service.api.app import create_app
from service.api.model_runtime import ModelLoadError, ModelRuntime, load_model_runtime


@pytest.fixture(scope="module")
def int8_export(
    model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A copy of the export with a real int8 model (dynamic quantisation: seconds, no calibration
    images) recorded in its manifest as `make export-int8` records its own."""
    root = tmp_path_factory.mktemp("int8")
    model_copy, onnx_copy = root / "model", root / "onnx"
    model_copy.mkdir()
    shutil.copy(model_dir / MODEL_CARD_FILE, model_copy)
    shutil.copytree(onnx_dir, onnx_copy)
    quantize_dynamic(onnx_copy / "model.onnx", onnx_copy / INT8_ONNX_FILE, weight_type=QuantType.QInt8)
    digest = hashlib.sha256((onnx_copy / INT8_ONNX_FILE).read_bytes()).hexdigest()
    manifest = json.loads((onnx_copy / MANIFEST_FILE).read_text())
    manifest["quantization"] = {"file": INT8_ONNX_FILE, "sha256": digest, "calibration_images": 0}
    (onnx_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    return model_copy, onnx_copy


def edited_copy(paths: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    onnx_copy = tmp_path / "onnx"
    shutil.copytree(paths[1], onnx_copy)
    return paths[0], onnx_copy


def int8_refusal(paths: tuple[Path, Path]) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as raised:
        load_model_runtime(*paths, precision="int8")
    assert "\n" not in str(raised.value)
    return raised.value


def radiograph_tensor(runtime: ModelRuntime, radiograph_png: bytes) -> np.ndarray:
    return runtime.preprocess(decode_image(radiograph_png).pixels)


def test_int8_is_served_and_stays_close_to_fp32(
    int8_export: tuple[Path, Path], runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    int8 = load_model_runtime(*int8_export, precision="int8")
    assert int8.precision == "int8" and runtime.precision == "fp32"
    tensor = radiograph_tensor(runtime, radiograph_png)
    fp32_probabilities = runtime.predict(tensor).probabilities
    int8_probabilities = int8.predict(tensor).probabilities
    difference = np.abs(int8_probabilities - fp32_probabilities)
    assert 0 < difference.max() < 0.1  # another graph (not the fp32 one), same answers roughly


def test_int8_refused_when_the_export_has_none(int8_export: tuple[Path, Path], tmp_path: Path) -> None:
    paths = edited_copy(int8_export, tmp_path)
    manifest = json.loads((paths[1] / MANIFEST_FILE).read_text())
    manifest["quantization"] = None
    (paths[1] / MANIFEST_FILE).write_text(json.dumps(manifest))
    error = int8_refusal(paths)
    assert error.path.endswith(MANIFEST_FILE) and "make export-int8" in error.problem
    assert load_model_runtime(*paths).precision == "fp32"  # fp32 still serves


def test_int8_file_missing(int8_export: tuple[Path, Path], tmp_path: Path) -> None:
    paths = edited_copy(int8_export, tmp_path)
    (paths[1] / INT8_ONNX_FILE).unlink()
    error = int8_refusal(paths)
    assert error.path.endswith(INT8_ONNX_FILE) and "not found" in error.problem


def test_int8_file_not_the_manifests(int8_export: tuple[Path, Path], tmp_path: Path) -> None:
    paths = edited_copy(int8_export, tmp_path)
    shutil.copy(paths[1] / "model.onnx", paths[1] / INT8_ONNX_FILE)  # a valid graph, another file
    error = int8_refusal(paths)
    assert error.path.endswith(INT8_ONNX_FILE) and "sha256 is" in error.problem


def test_the_session_under_load_gives_the_same_answers(
    model_dir: Path, onnx_dir: Path, runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    both = load_model_runtime(model_dir, onnx_dir, 2, 1, threads_under_load=1)
    assert both.loaded_session is not None and runtime.loaded_session is None
    tensor = radiograph_tensor(both, radiograph_png)
    alone, loaded = both.predict(tensor, alone=True), both.predict(tensor, alone=False)
    np.testing.assert_allclose(loaded.probabilities, alone.probabilities, atol=1e-5)
    np.testing.assert_allclose(loaded.feature_map, alone.feature_map, atol=1e-4)
    # The same number of threads in both: no second session.
    assert load_model_runtime(model_dir, onnx_dir, 1, 1, threads_under_load=1).loaded_session is None


def test_the_default_serves_the_int8_model_the_card_records(
    model_dir: Path, onnx_dir: Path, make_settings: MakeSettings, runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    """MODEL_PRECISION defaults to int8: the export's model.int8.onnx, built from the calibration
    ranges recorded beside the model, is the file whose AUROC the card records, and it answers."""
    if not (model_dir / CALIBRATION_RANGES_FILE).is_file():
        pytest.skip(f"{model_dir} records no int8 calibration")
    settings = make_settings()
    assert settings.model_precision == "int8"
    recorded = load_model_card(model_dir).export
    assert recorded is not None and recorded.quantization is not None
    assert load_manifest(onnx_dir).quantization == recorded.quantization

    with served(create_app(settings)) as client:
        answer = upload(client, radiograph_png, "?heatmaps=none").json()

    assert answer["model"]["precision"] == "int8"
    fp32 = runtime.predict(radiograph_tensor(runtime, radiograph_png)).probabilities
    int8 = np.array([answer["probabilities"][label] for label in LABELS])
    assert 0 < np.abs(int8 - fp32).max() < 0.1
