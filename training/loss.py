"""Class-weighted binary cross-entropy of the course material.

w_pos[label] = frequency of negatives, w_neg[label] = frequency of positives (from the training
split), so each label's positive and negative terms contribute equally on average. The loss is the
sum over labels of the per-label mean over the batch; epsilon sits inside the log.
"""

import numpy as np


def class_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w_pos, w_neg) per label from a (n, 14) 0/1 matrix."""
    positive_frequency = np.mean(labels, axis=0)
    return (1.0 - positive_frequency).astype(np.float32), positive_frequency.astype(np.float32)


def weighted_bce_numpy(
    y_true: np.ndarray, y_pred: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, epsilon: float = 1e-7
) -> float:
    """Reference implementation in numpy (the maths, for tests and evaluation)."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    per_label = -(
        w_pos * y_true * np.log(y_pred + epsilon) + w_neg * (1.0 - y_true) * np.log(1.0 - y_pred + epsilon)
    )
    return float(np.sum(np.mean(per_label, axis=0)))


def make_weighted_bce(w_pos: np.ndarray, w_neg: np.ndarray, epsilon: float = 1e-7):
    """The same loss as a Keras loss function (keras.ops, backend-agnostic)."""
    from keras import ops

    positive_weight = ops.convert_to_tensor(np.asarray(w_pos, dtype=np.float32))
    negative_weight = ops.convert_to_tensor(np.asarray(w_neg, dtype=np.float32))

    def weighted_bce(y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        per_label = -(
            positive_weight * y_true * ops.log(y_pred + epsilon)
            + negative_weight * (1.0 - y_true) * ops.log(1.0 - y_pred + epsilon)
        )
        return ops.sum(ops.mean(per_label, axis=0))

    return weighted_bce
