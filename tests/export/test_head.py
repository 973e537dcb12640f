"""export.head: the CAM head weights reproduce the network's probabilities from its feature map."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cxr.onnx_manifest import HEAD_FILE, INPUT_NAME, ONNX_FILE
from export.head import load_head, probabilities_from_features, save_head


def test_save_head_round_trips_under_a_name_without_npz_suffix(tmp_path: Path) -> None:
    kernel = np.arange(28, dtype=np.float32).reshape(2, 14)
    bias = np.linspace(-1, 1, 14, dtype=np.float32)

    save_head(kernel, bias, tmp_path / ".head.npz.partial")
    loaded_kernel, loaded_bias = load_head(tmp_path / ".head.npz.partial")

    np.testing.assert_array_equal(loaded_kernel, kernel)
    np.testing.assert_array_equal(loaded_bias, bias)


def test_probabilities_from_features_pools_then_applies_the_dense_sigmoid() -> None:
    feature_map = np.zeros((1, 2, 2, 1), dtype=np.float32)
    feature_map[0, 0, 0, 0] = 4.0  # mean over the 2 x 2 map: 1.0
    kernel = np.full((1, 14), 2.0, dtype=np.float32)
    bias = np.full(14, -2.0, dtype=np.float32)

    probabilities = probabilities_from_features(feature_map, kernel, bias)

    np.testing.assert_allclose(probabilities, np.full((1, 14), 0.5))


@pytest.mark.slow
def test_head_file_reproduces_onnx_probabilities_on_real_images(
    exported: Path, fixture_inputs: np.ndarray
) -> None:
    session = ort.InferenceSession(str(exported / ONNX_FILE), providers=["CPUExecutionProvider"])
    probabilities, feature_map = session.run(None, {INPUT_NAME: fixture_inputs})
    kernel, bias = load_head(exported / HEAD_FILE)

    assert kernel.shape == (feature_map.shape[-1], 14) and kernel.dtype == np.float32
    assert bias.shape == (14,) and bias.dtype == np.float32
    reproduced = probabilities_from_features(feature_map, kernel, bias)
    np.testing.assert_allclose(reproduced, probabilities, atol=1e-4)
