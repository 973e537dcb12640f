"""Evaluation maths against scikit-learn, on random data with ties."""

import numpy as np
import pytest

from training.metrics import (
    auroc,
    bootstrap_auroc,
    confusion,
    mean_auroc,
    paired_bootstrap_difference,
    per_label_auroc,
    roc_curve,
    youden_threshold,
)


def tied_data(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores on a coarse grid (many ties), loosely related to the labels."""
    rng = np.random.default_rng(seed)
    y_true = rng.random(n) < 0.3
    scores = np.round(np.clip(0.2 * y_true + rng.normal(0.4, 0.2, n), 0, 1), 1)
    return y_true.astype(np.float32), scores


def pair_count_auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The definition, counted pair by pair: P(positive scores above negative), ties one half."""
    positives, negatives = scores[y_true == 1], scores[y_true == 0]
    wins = sum(float(p > q) + 0.5 * float(p == q) for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_counts_pairs_with_ties_one_half(seed: int) -> None:
    y_true, scores = tied_data(seed)
    assert len(np.unique(scores)) < len(scores) / 10  # ties are exercised
    assert auroc(y_true, scores) == pytest.approx(pair_count_auroc(y_true, scores), abs=1e-12)


def test_auroc_of_constant_scores_is_one_half() -> None:
    assert auroc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == pytest.approx(0.5)


@pytest.mark.parametrize("y_true", [np.zeros(5), np.ones(5)])
def test_auroc_is_undefined_with_one_class(y_true: np.ndarray) -> None:
    assert auroc(y_true, np.linspace(0, 1, 5)) is None


def test_mean_auroc_skips_undefined_labels() -> None:
    y_true = np.array([[0, 0], [1, 0], [0, 0], [1, 0]], dtype=np.float32)
    scores = np.array([[0.1, 0.5], [0.9, 0.5], [0.2, 0.5], [0.8, 0.5]])
    assert per_label_auroc(y_true, scores) == [1.0, None]
    assert mean_auroc(y_true, scores) == 1.0


def test_roc_curve_steps_through_each_distinct_score() -> None:
    y_true = np.array([0, 1, 1, 0, 1])
    scores = np.array([0.8, 0.4, 0.35, 0.1, 0.4])  # 0.4 twice: one decision
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    np.testing.assert_allclose(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])
    np.testing.assert_allclose(fpr, [0, 0.5, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0, 2 / 3, 1, 1])
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y_true, scores))


def test_bootstrap_interval_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    y_true = (rng.random((150, 14)) < 0.3).astype(np.float32)
    scores = np.clip(0.3 * y_true + rng.normal(0.4, 0.2, y_true.shape), 0, 1)
    per_label, mean_bounds = bootstrap_auroc(y_true, scores, rounds=200, seed=1)
    point = per_label_auroc(y_true, scores)
    for j, value in enumerate(point):
        assert per_label[j, 0] <= value <= per_label[j, 1]
    assert mean_bounds[0] <= mean_auroc(y_true, scores) <= mean_bounds[1]
    assert (per_label[:, 1] - per_label[:, 0] < 0.35).all()  # 150 images: intervals are informative


def test_bootstrap_is_deterministic_per_seed_and_tolerates_one_class_labels() -> None:
    y_true = np.array([[1, 0], [0, 0], [1, 0], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    scores = np.array([[0.9, 0.1], [0.2, 0.2], [0.7, 0.3], [0.4, 0.4], [0.6, 0.5], [0.1, 0.6]])
    first, first_mean = bootstrap_auroc(y_true, scores, rounds=50, seed=3)
    second, second_mean = bootstrap_auroc(y_true, scores, rounds=50, seed=3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_mean, second_mean)
    assert np.isnan(first[1]).all()  # the second label has no positive: no interval


def test_youden_threshold_separates_a_separable_case() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    threshold = youden_threshold(y_true, scores)
    assert threshold == pytest.approx(0.7)  # the lowest positive score: p >= threshold is a finding
    counts = confusion(y_true, scores, threshold)
    assert (counts["tp"], counts["fp"], counts["fn"], counts["tn"]) == (3, 0, 0, 3)


def test_youden_threshold_keeps_a_specificity_floor() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.5, 0.9, 0.95])
    assert youden_threshold(y_true, scores) == pytest.approx(0.4)  # sensitivity 1, specificity 0.75
    assert youden_threshold(y_true, scores, min_specificity=1.0) == pytest.approx(0.9)
    # No score keeps every negative below it: the threshold goes just above the highest score.
    above_all = youden_threshold(np.array([0, 1, 1, 0]), np.array([0.2, 0.3, 0.4, 0.9]), min_specificity=1.0)
    assert 0.9 < above_all < 0.9 + 1e-9


@pytest.mark.parametrize("y_true", [np.zeros(4), np.ones(4)])
def test_youden_threshold_is_one_half_with_one_class(y_true: np.ndarray) -> None:
    assert youden_threshold(y_true, np.array([0.1, 0.4, 0.6, 0.9])) == 0.5


def test_confusion_counts_and_rates() -> None:
    counts = confusion(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.4, 0.6, 0.1, 0.5]), 0.5)
    assert (counts["tp"], counts["fp"], counts["fn"], counts["tn"]) == (2, 1, 1, 1)
    assert counts["precision"] == pytest.approx(2 / 3)
    assert counts["recall"] == pytest.approx(2 / 3)
    assert counts["accuracy"] == pytest.approx(3 / 5)


@pytest.mark.parametrize(
    ("y_true", "scores", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        ([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9], 0.875),  # a tied pair counts one half
        ([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8], 0.0),
    ],
)
def test_auroc_of_hand_counted_pairs(y_true: list[int], scores: list[float], expected: float) -> None:
    assert auroc(np.array(y_true), np.array(scores)) == pytest.approx(expected)


def test_per_label_auroc_is_the_auroc_of_each_column() -> None:
    columns = [tied_data(seed, n=80) for seed in range(4)]
    y_true = np.stack([column[0] for column in columns], axis=1)
    scores = np.stack([column[1] for column in columns], axis=1)
    y_true[:, 2] = 0  # one label without positives
    expected = [auroc(y_true[:, j], scores[:, j]) for j in range(4)]
    assert per_label_auroc(y_true, scores) == pytest.approx(expected)
    assert expected[2] is None


def test_the_paired_bootstrap_sees_a_better_model_and_no_difference_against_itself() -> None:
    rng = np.random.default_rng(3)
    y_true = (rng.random((120, 14)) < 0.3).astype(np.float32)
    good = np.clip(0.5 * y_true + 0.5 * rng.random((120, 14)), 0, 1)
    poor = rng.random((120, 14))
    difference, interval, not_better = paired_bootstrap_difference(y_true, good, poor, rounds=200)
    assert difference == pytest.approx(mean_auroc(y_true, good) - mean_auroc(y_true, poor))
    assert 0 < interval[0] < difference < interval[1] and not_better == 0.0
    reverse, reverse_interval, reverse_not_better = paired_bootstrap_difference(
        y_true, poor, good, rounds=200
    )
    assert reverse == pytest.approx(-difference) and reverse_interval[1] < 0 and reverse_not_better == 1.0
    same, same_interval, _ = paired_bootstrap_difference(y_true, good, good, rounds=50)
    assert same == 0.0 and tuple(same_interval) == (0.0, 0.0)
    with pytest.raises(ValueError, match="both classes"):
        paired_bootstrap_difference(np.zeros((5, 14)), good[:5], poor[:5])
