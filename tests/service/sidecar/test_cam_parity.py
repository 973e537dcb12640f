"""Grad-CAM of the logit at the final feature map equals the class activation map (cxr.cam).

With global average pooling and a Dense head, d logit_c / d A_k(i, j) = w_kc / (h * w) everywhere,
so Grad-CAM's channel weights are the head's kernel column up to a positive factor, which
normalise_heatmap removes. Checked in-process against Keras's own feature map, and end to end:
the sidecar over HTTP against CAM from the ONNX export's feature_map output and head.npz.

A label is skipped only when both of its maps are all zero on every fixture image: then the
evidence sum_k w_kc A_k is negative everywhere, the ReLU leaves nothing, and there is no shape to
correlate (both methods agreeing on "nothing" is still checked).
"""

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from cxr.cam import class_activation_maps, normalise_heatmap
from cxr.labels import LABELS
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, load_manifest
from service.gradcam_protocol import GRADCAM_PATH, GradCamResponse, decode_array, encode_array

if TYPE_CHECKING:  # TensorFlow is imported only when the in-process test runs
    import keras

    from service.sidecar.gradcam import GradientModel

MIN_PEARSON = 0.99
Maps = dict[str, dict[str, np.ndarray]]  # image name -> label -> (h, w) map


def pearson_or_none(first: np.ndarray, second: np.ndarray) -> float | None:
    """Pearson correlation of two maps; None when both are all zero (nothing to correlate)."""
    if not first.any() and not second.any():
        return None
    assert first.any() and second.any(), "one method finds evidence where the other finds none"
    if first.std() == 0 or second.std() == 0:  # flat maps: correlation undefined, compare directly
        return 1.0 if np.allclose(first, second, atol=1e-4) else 0.0
    return float(np.corrcoef(first.ravel(), second.ravel())[0, 1])


def assert_parity(label: str, grad_cam_maps: Maps, cam_maps: Maps) -> float:
    correlations = {
        name: pearson_or_none(grad_cam_maps[name][label], cam_maps[name][label]) for name in cam_maps
    }
    measured = {name: r for name, r in correlations.items() if r is not None}
    if not measured:
        pytest.skip(f"{label}: both maps are all zero on every image (no positive evidence to compare)")
    assert min(measured.values()) >= MIN_PEARSON, f"{label}: Pearson per image {measured}"
    return min(measured.values())


@pytest.fixture(scope="module")
def keras_maps(
    served_model: "keras.Model",
    default_gradient_model: "GradientModel",
    fixture_inputs: dict[str, np.ndarray],
) -> tuple[Maps, Maps]:
    """(Grad-CAM by the pure function, CAM from the same Keras feature map) per image and label."""
    from service.sidecar.gradcam import HEAD_LAYER, grad_cam

    kernel = served_model.get_layer(HEAD_LAYER).get_weights()[0]
    grad_cams: Maps = {}
    cams: Maps = {}
    for name, image in fixture_inputs.items():
        feature_map = np.asarray(default_gradient_model.model(image[np.newaxis], training=False)[0][0])
        grad_cams[name] = dict(
            zip(LABELS, grad_cam(default_gradient_model, image, range(len(LABELS))), strict=True)
        )
        cam = normalise_heatmap(class_activation_maps(feature_map, kernel, list(range(len(LABELS)))))
        cams[name] = dict(zip(LABELS, cam, strict=True))
    return grad_cams, cams


@pytest.fixture(scope="module")
def sidecar_maps(sidecar_client: httpx.Client, fixture_inputs: dict[str, np.ndarray]) -> Maps:
    """The sidecar's Grad-CAM of every label, one request per image."""
    maps: Maps = {}
    for name, image in fixture_inputs.items():
        body = {"tensor": encode_array(image), "shape": list(image.shape), "labels": list(LABELS)}
        response = sidecar_client.post(GRADCAM_PATH, json=body)
        assert response.status_code == 200, response.text
        answer = GradCamResponse.model_validate(response.json())
        maps[name] = {label: decode_array(answer.heatmaps[label], answer.heatmap_shape) for label in LABELS}
    return maps


@pytest.fixture(scope="module")
def onnx_cam_maps(onnx_dir: Path, fixture_inputs: dict[str, np.ndarray]) -> Maps:
    """CAM as the API's fast path computes it: ONNX feature_map output, head.npz kernel, normalise_heatmap."""
    import onnxruntime as ort

    manifest = load_manifest(onnx_dir)
    session = ort.InferenceSession(str(onnx_dir / manifest.onnx_file), providers=["CPUExecutionProvider"])
    with np.load(onnx_dir / manifest.head_file) as head:
        kernel = head["kernel"]
    maps: Maps = {}
    for name, image in fixture_inputs.items():
        feature_map = session.run([FEATURE_MAP_OUTPUT], {INPUT_NAME: image[np.newaxis]})[0][0]
        cam = normalise_heatmap(class_activation_maps(feature_map, kernel, list(range(len(LABELS)))))
        maps[name] = dict(zip(LABELS, cam, strict=True))
    return maps


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
def test_grad_cam_equals_cam_of_keras_feature_map(label: str, keras_maps: tuple[Maps, Maps]) -> None:
    grad_cams, cams = keras_maps
    assert_parity(label, grad_cams, cams)
    for name in cams:
        np.testing.assert_allclose(grad_cams[name][label], cams[name][label], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("label", LABELS)
def test_sidecar_grad_cam_equals_onnx_cam(label: str, sidecar_maps: Maps, onnx_cam_maps: Maps) -> None:
    assert_parity(label, sidecar_maps, onnx_cam_maps)
    for name in onnx_cam_maps:  # measured on the dev model: at most 3e-6 apart
        np.testing.assert_allclose(sidecar_maps[name][label], onnx_cam_maps[name][label], atol=1e-3)
