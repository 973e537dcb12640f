"""Class activation maps and heatmap normalisation (numpy only).

For a global-average-pooling + Dense head, Grad-CAM at the final feature map taken on the logit
equals the class activation map: d logit_c / d A_k(i, j) = w_kc / (h * w) is constant over the
map, so the Grad-CAM channel weights are the Dense kernel column up to a positive factor, which
the normalisation removes.
"""

import numpy as np

EPSILON = 1e-8


def class_activation_maps(
    feature_map: np.ndarray, kernel: np.ndarray, label_indices: list[int]
) -> np.ndarray:
    """(labels, h, w) raw maps sum_k w_kc * A_k from one (h, w, channels) feature map."""
    return np.einsum(
        "hwk,kc->chw", feature_map.astype(np.float32), kernel[:, label_indices].astype(np.float32)
    )


def normalise_heatmap(raw: np.ndarray) -> np.ndarray:
    """ReLU, then divide by the maximum (epsilon-guarded): values in [0, 1], all-zero maps stay zero."""
    positive = np.maximum(raw.astype(np.float32), 0.0)
    peak = positive.reshape(positive.shape[0], -1).max(axis=1) if positive.ndim == 3 else positive.max()
    peak = np.asarray(peak, dtype=np.float32)
    scale = np.where(peak > EPSILON, peak, 1.0)
    if positive.ndim == 3:
        return positive / scale[:, None, None]
    return positive / scale
