"""The Dense head's weights as numpy arrays: the API's class-activation-map fast path."""

from pathlib import Path

import keras
import numpy as np

from cxr.labels import LABELS
from training.model import HEAD_LAYER


class HeadError(ValueError):
    """The head layer is not a (channels -> 14) Dense layer with a bias."""


def head_arrays(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (C, 14), bias (14,)) float32 of the "predictions" layer."""
    try:
        weights = model.get_layer(HEAD_LAYER).get_weights()
    except ValueError as error:
        raise HeadError(f"{model.name} has no head layer {HEAD_LAYER!r}") from error
    if len(weights) != 2:
        raise HeadError(
            f"head layer {HEAD_LAYER!r} has {len(weights)} weight arrays, expected kernel and bias"
        )
    kernel, bias = (np.asarray(array, dtype=np.float32) for array in weights)
    if kernel.ndim != 2 or kernel.shape[1] != len(LABELS) or bias.shape != (len(LABELS),):
        raise HeadError(
            f"head kernel {kernel.shape} / bias {bias.shape} are not (C, {len(LABELS)}) / ({len(LABELS)},)"
        )
    return kernel, bias


def save_head(kernel: np.ndarray, bias: np.ndarray, path: str | Path) -> None:
    # Through a handle: np.savez appends ".npz" to path names that lack it (temporary names do).
    with open(path, "wb") as handle:
        np.savez(handle, kernel=kernel, bias=bias)


def load_head(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as arrays:
        return arrays["kernel"], arrays["bias"]


def probabilities_from_features(feature_map: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """sigmoid(mean over h, w of the (N, h, w, C) map @ kernel + bias): what the head computes."""
    pooled = feature_map.astype(np.float64).mean(axis=(1, 2))
    return 1.0 / (1.0 + np.exp(-(pooled @ kernel.astype(np.float64) + bias.astype(np.float64))))
