"""Start-up checks of the served model: every mismatch names its file and the problem."""

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import MODEL_CARD_FILE
from cxr.onnx_manifest import MANIFEST_FILE
from service.api.model_runtime import ModelLoadError, ModelRuntime, load_model_runtime


def test_the_exported_model_loads_and_passes_its_self_check(runtime: ModelRuntime, onnx_dir: Path) -> None:
    assert runtime.card.sha256 == runtime.manifest.keras_sha256
    assert runtime.kernel.shape == (runtime.manifest.feature_map_shape[2], len(LABELS))
    prediction = runtime.predict(runtime.preprocess(np.full((300, 300), 0.5, np.float32)))
    assert prediction.probabilities.shape == (len(LABELS),)
    assert prediction.feature_map.shape == tuple(runtime.manifest.feature_map_shape)
    pooled = prediction.feature_map.mean(axis=(0, 1)).astype(np.float64)
    expected = 1 / (1 + np.exp(-(pooled @ runtime.kernel + runtime.bias)))
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-4)


@pytest.fixture
def copies(model_dir: Path, onnx_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Editable copies: the card alone (the API never reads the weights) and the export."""
    model_copy, onnx_copy = tmp_path / "model", tmp_path / "onnx"
    model_copy.mkdir()
    shutil.copy(model_dir / MODEL_CARD_FILE, model_copy)
    shutil.copytree(onnx_dir, onnx_copy)
    return model_copy, onnx_copy


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def set_manifest_sha(onnx: Path, field: str, file: str) -> None:
    digest = hashlib.sha256((onnx / file).read_bytes()).hexdigest()
    edit_json(onnx / MANIFEST_FILE, lambda m: m.update({field: digest}))


def rewrite_head(onnx: Path, kernel: np.ndarray, bias: np.ndarray) -> None:
    np.savez(onnx / "head.npz", kernel=kernel, bias=bias)
    set_manifest_sha(onnx, "head_sha256", "head.npz")


def load(paths: tuple[Path, Path]) -> ModelRuntime:
    return load_model_runtime(paths[0], paths[1])


def refusal(paths: tuple[Path, Path]) -> ModelLoadError:
    with pytest.raises(ModelLoadError) as raised:
        load(paths)
    assert "\n" not in str(raised.value)
    return raised.value


def test_copies_load(copies: tuple[Path, Path]) -> None:
    load(copies)


def test_missing_card(copies: tuple[Path, Path]) -> None:
    (copies[0] / MODEL_CARD_FILE).unlink()
    error = refusal(copies)
    assert error.path.endswith(MODEL_CARD_FILE) and "not found" in error.problem


def test_invalid_card(copies: tuple[Path, Path]) -> None:
    edit_json(copies[0] / MODEL_CARD_FILE, lambda card: card.update(labels=list(reversed(LABELS))))
    error = refusal(copies)
    assert error.path.endswith(MODEL_CARD_FILE) and "not a valid model card: labels" in error.problem


def test_missing_manifest(copies: tuple[Path, Path]) -> None:
    (copies[1] / MANIFEST_FILE).unlink()
    error = refusal(copies)
    assert error.path.endswith(MANIFEST_FILE) and "ONNX_DIR" in error.problem


def test_export_of_other_weights(copies: tuple[Path, Path]) -> None:
    edit_json(copies[0] / MODEL_CARD_FILE, lambda card: card.update(sha256="0" * 64))
    error = refusal(copies)
    assert error.path.endswith(MANIFEST_FILE) and "the export was made from weights" in error.problem


def test_card_input_size_differs(copies: tuple[Path, Path]) -> None:
    edit_json(copies[0] / MODEL_CARD_FILE, lambda card: card.update(input_size=card["input_size"] + 32))
    error = refusal(copies)
    assert error.path.endswith(MANIFEST_FILE) and "input size" in error.problem


def test_onnx_input_size_differs_from_card_and_manifest(copies: tuple[Path, Path]) -> None:
    edit_json(copies[0] / MODEL_CARD_FILE, lambda card: card.update(input_size=card["input_size"] + 32))
    edit_json(copies[1] / MANIFEST_FILE, lambda m: m.update(input_size=m["input_size"] + 32))
    error = refusal(copies)
    assert error.path.endswith("model.onnx") and "input shape" in error.problem


def test_onnx_file_changed(copies: tuple[Path, Path]) -> None:
    onnx = copies[1] / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    error = refusal(copies)
    assert error.path.endswith("model.onnx") and "sha256 is" in error.problem


def test_onnx_file_corrupt(copies: tuple[Path, Path]) -> None:
    (copies[1] / "model.onnx").write_bytes(b"this is not an onnx graph")
    set_manifest_sha(copies[1], "onnx_sha256", "model.onnx")
    error = refusal(copies)
    assert error.path.endswith("model.onnx") and "onnxruntime cannot load it" in error.problem


def test_onnx_file_missing(copies: tuple[Path, Path]) -> None:
    (copies[1] / "model.onnx").unlink()
    assert refusal(copies).path.endswith("model.onnx")


def test_head_changed(copies: tuple[Path, Path]) -> None:
    (copies[1] / "head.npz").write_bytes(b"x")
    error = refusal(copies)
    assert error.path.endswith("head.npz") and "sha256 is" in error.problem


def test_head_not_an_npz(copies: tuple[Path, Path]) -> None:
    (copies[1] / "head.npz").write_bytes(b"not a zip file")
    set_manifest_sha(copies[1], "head_sha256", "head.npz")
    assert "not a head file" in refusal(copies).problem


def test_head_channels_differ_from_the_feature_map(copies: tuple[Path, Path], runtime: ModelRuntime) -> None:
    rewrite_head(copies[1], np.zeros((7, len(LABELS)), np.float32), runtime.bias)
    error = refusal(copies)
    assert error.path.endswith("model.onnx") and "head.npz has 7 kernel rows" in error.problem


def test_head_of_another_model_fails_the_self_check(copies: tuple[Path, Path], runtime: ModelRuntime) -> None:
    rewrite_head(copies[1], runtime.kernel[:, ::-1].copy(), runtime.bias[::-1].copy())
    error = refusal(copies)
    assert error.path.endswith("model.onnx") and "does not belong to this graph" in error.problem


def test_manifest_feature_map_shape_wrong(copies: tuple[Path, Path]) -> None:
    edit_json(
        copies[1] / MANIFEST_FILE, lambda m: m.update(feature_map_shape=[1, 1, m["feature_map_shape"][2]])
    )
    assert "feature map has shape" in refusal(copies).problem


IDLE_CPU_AFTER_A_RUN = """
import sys, time
import numpy as np
from service.api.model_runtime import load_model_runtime
runtime = load_model_runtime(sys.argv[1], sys.argv[2], intra_op_threads=2, allow_spinning=True)
for _ in range(2):
    runtime.predict(np.zeros((runtime.input_size, runtime.input_size, 3), np.float32))
started = time.process_time()
time.sleep(0.3)
print((time.process_time() - started) * 1000)
"""


def test_spinning_threads_stop_when_the_run_returns(model_dir: Path, onnx_dir: Path) -> None:
    """A spinning pool spins between the parallel sections of a run, not after it, where it would
    take the core from the next request's decoding (without the stop: ~39 ms of CPU in these
    0.3 s on the 2-core machine). Its own process, so that no other thread is counted."""
    result = subprocess.run(
        [sys.executable, "-c", IDLE_CPU_AFTER_A_RUN, str(model_dir), str(onnx_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert float(result.stdout) < 10.0
