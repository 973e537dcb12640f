"""Proof that the ONNX graph computes what the Keras model computes, on real radiographs."""

import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort

from cxr.model_card import ModelCard
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, PROBABILITIES_OUTPUT, Parity
from cxr.preprocessing import preprocess_bytes

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-4
# Absolute, on ReLU activations of order 1 to 10 (about 1e-4 relative); the shipped model's export
# measured 2.3e-6.
FEATURE_MAP_TOLERANCE = 1e-3
# The committed NIH fixtures; the export image keeps them for this check (see .dockerignore).
FIXTURE_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


class ParityError(RuntimeError):
    """ONNX and Keras outputs differ by more than the tolerance on real images."""


def default_parity_images() -> list[Path]:
    return sorted(FIXTURE_DIR.glob("*.png"))


def load_inputs(paths: Sequence[Path], card: ModelCard) -> np.ndarray:
    """(N, S, S, 3) float32 through the project's one preprocessing path."""
    if not paths:
        raise ParityError("no parity images: the export proves itself on real radiographs (--parity-images)")
    size, mean, std = card.input_size, card.normalisation.mean, card.normalisation.std
    return np.stack([preprocess_bytes(Path(path).read_bytes(), size, mean, std) for path in paths])


def open_session(onnx_path: str | Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def check_session_outputs(session: ort.InferenceSession) -> None:
    """onnxruntime sees the names the API will ask for."""
    inputs = [node.name for node in session.get_inputs()]
    outputs = [node.name for node in session.get_outputs()]
    if inputs != [INPUT_NAME] or outputs != [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT]:
        raise ParityError(
            f"onnxruntime sees inputs {inputs} and outputs {outputs}, "
            f"expected [{INPUT_NAME}] and [{PROBABILITIES_OUTPUT}, {FEATURE_MAP_OUTPUT}]"
        )


def run_keras(export_model: keras.Model, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities, feature_map = export_model(inputs, training=False)
    return np.asarray(probabilities), np.asarray(feature_map)


def run_onnx(session: ort.InferenceSession, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities, feature_map = session.run([PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT], {INPUT_NAME: inputs})
    return np.asarray(probabilities), np.asarray(feature_map)


def measure_parity(
    export_model: keras.Model,
    session: ort.InferenceSession,
    images: Sequence[Path],
    card: ModelCard,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Parity:
    """Largest |Keras - onnxruntime| of both outputs over the images, run as one batch."""
    check_session_outputs(session)
    inputs = load_inputs(images, card)
    keras_p, keras_f = run_keras(export_model, inputs)
    onnx_p, onnx_f = run_onnx(session, inputs)
    for name, keras_out, onnx_out in (("probabilities", keras_p, onnx_p), ("feature_map", keras_f, onnx_f)):
        if keras_out.shape != onnx_out.shape:
            raise ParityError(f"{name}: Keras shape {keras_out.shape}, onnxruntime shape {onnx_out.shape}")
    parity = Parity(
        images=[Path(path).name for path in images],
        max_abs_diff_probabilities=_max_abs_diff(keras_p, onnx_p),
        max_abs_diff_feature_map=_max_abs_diff(keras_f, onnx_f),
        tolerance=tolerance,
    )
    logger.info(
        "parity on %d images: max |dp| %.3g, max |dfeature| %.3g (tolerance %.3g)",
        len(images),
        parity.max_abs_diff_probabilities,
        parity.max_abs_diff_feature_map,
        tolerance,
    )
    return parity


def check_parity(parity: Parity, feature_map_tolerance: float = FEATURE_MAP_TOLERANCE) -> None:
    """Raise ParityError when the probabilities differ by more than the tolerance, the feature maps
    (which the heatmaps are made of) by more than theirs, or either is not finite."""
    for output, diff, tolerance in (
        ("probabilities", parity.max_abs_diff_probabilities, parity.tolerance),
        ("feature maps", parity.max_abs_diff_feature_map, feature_map_tolerance),
    ):
        if not np.isfinite(diff) or diff > tolerance:
            raise ParityError(
                f"ONNX and Keras {output} differ by up to {diff:.3g} on {', '.join(parity.images)} "
                f"(tolerance {tolerance:.3g}); the ONNX file was not published"
            )


def _max_abs_diff(expected: np.ndarray, actual: np.ndarray) -> float:
    # NaN anywhere must fail the check, so it is propagated rather than ignored.
    return float(np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64))))
