"""Class-weighted binary cross-entropy: the course's worked example, numpy and Keras alike."""

import numpy as np
import pytest

from training.loss import class_weights, make_weighted_bce, weighted_bce_numpy

# The course's worked example: 4 images, 3 labels, epsilon 1.
Y_TRUE = np.array([[1, 1, 1], [1, 1, 0], [0, 1, 0], [1, 0, 1]], dtype=np.float32)
W_POS = np.array([0.25, 0.25, 0.5], dtype=np.float32)
W_NEG = np.array([0.75, 0.75, 0.5], dtype=np.float32)
COURSE_LOSS = -0.4956203


def keras_loss(
    y_true: np.ndarray, y_pred: np.ndarray, w_pos: np.ndarray, w_neg: np.ndarray, epsilon: float
) -> float:
    from keras import ops

    return float(ops.convert_to_numpy(make_weighted_bce(w_pos, w_neg, epsilon)(y_true, y_pred)))


@pytest.mark.parametrize("probability", [0.7, 0.3])
def test_numpy_loss_matches_the_course_example(probability: float) -> None:
    y_pred = np.full(Y_TRUE.shape, probability, dtype=np.float32)
    assert weighted_bce_numpy(Y_TRUE, y_pred, W_POS, W_NEG, epsilon=1) == pytest.approx(COURSE_LOSS, abs=1e-6)


@pytest.mark.parametrize("probability", [0.7, 0.3])
def test_keras_loss_matches_the_course_example(probability: float) -> None:
    y_pred = np.full(Y_TRUE.shape, probability, dtype=np.float32)
    assert keras_loss(Y_TRUE, y_pred, W_POS, W_NEG, epsilon=1) == pytest.approx(COURSE_LOSS, abs=1e-6)


def test_keras_and_numpy_losses_agree_on_random_data() -> None:
    rng = np.random.default_rng(3)
    y_true = (rng.random((16, 14)) < 0.2).astype(np.float32)
    y_pred = rng.uniform(0.01, 0.99, (16, 14)).astype(np.float32)
    w_pos, w_neg = class_weights(y_true)
    expected = weighted_bce_numpy(y_true, y_pred, w_pos, w_neg)
    assert keras_loss(y_true, y_pred, w_pos, w_neg, epsilon=1e-7) == pytest.approx(expected, rel=1e-5)


def test_class_weights_are_the_opposite_frequencies() -> None:
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 1], [1, 0, 1]], dtype=np.float32)
    w_pos, w_neg = class_weights(labels)
    np.testing.assert_allclose(w_pos, [0.2, 0.6, 0.2], atol=1e-6)
    np.testing.assert_allclose(w_neg, [0.8, 0.4, 0.8], atol=1e-6)
    assert w_pos.dtype == w_neg.dtype == np.float32


def test_weighted_positive_and_negative_contributions_are_equal() -> None:
    labels = (np.random.default_rng(0).random((50, 14)) < 0.1).astype(np.float32)
    freq_pos = labels.mean(axis=0)
    w_pos, w_neg = class_weights(labels)
    np.testing.assert_allclose(w_pos * freq_pos, w_neg * (1 - freq_pos), atol=1e-6)


def test_a_perfect_prediction_costs_almost_nothing() -> None:
    assert weighted_bce_numpy(Y_TRUE, Y_TRUE, W_POS, W_NEG) == pytest.approx(0.0, abs=1e-5)
