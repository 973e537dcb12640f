"""Decisions at fixed thresholds: operating points, sweeps and the any-finding flag."""

import numpy as np
import pytest

from cxr.labels import LABELS
from training.operating_point import (
    SWEEP_THRESHOLDS,
    any_finding,
    decision_rates,
    operating_points,
    threshold_sweep,
    youden_j,
)


def test_decision_rates_of_a_small_case() -> None:
    rates = decision_rates(np.array([1, 1, 0, 0, 1]), np.array([True, False, True, False, True]))
    assert (rates["tp"], rates["fp"], rates["fn"], rates["tn"]) == (2, 1, 1, 1)
    assert rates["sensitivity"] == pytest.approx(2 / 3)
    assert rates["specificity"] == pytest.approx(1 / 2)
    assert rates["ppv"] == pytest.approx(2 / 3)
    assert rates["npv"] == pytest.approx(1 / 2)
    assert rates["f1"] == pytest.approx(2 / 3)
    assert rates["accuracy"] == pytest.approx(3 / 5)


def test_undefined_rates_are_none_not_zero() -> None:
    rates = decision_rates(np.array([0, 0, 0]), np.array([False, False, False]))
    assert rates["sensitivity"] is None and rates["ppv"] is None and rates["f1"] is None
    assert rates["specificity"] == 1.0


def test_operating_points_use_the_given_thresholds_per_label() -> None:
    labels = np.zeros((4, 14), dtype=np.float32)
    labels[:2, 0] = 1
    probabilities = np.full((4, 14), 0.5)
    probabilities[:, 0] = [0.9, 0.6, 0.7, 0.1]
    thresholds = dict.fromkeys(LABELS, 0.5) | {LABELS[0]: 0.65}
    points = operating_points(labels, probabilities, thresholds)
    first = points[LABELS[0]]
    assert first["threshold"] == 0.65
    assert (first["tp"], first["fp"], first["fn"], first["tn"]) == (1, 1, 1, 1)
    assert points[LABELS[1]]["fp"] == 4  # p >= threshold counts as a finding


def test_threshold_sweep_rows_follow_the_thresholds() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((30, 14)) < 0.3).astype(np.float32)
    probabilities = rng.random((30, 14))
    sweep = threshold_sweep(labels, probabilities)
    assert set(sweep) == set(LABELS)
    rows = sweep[LABELS[0]]
    assert [row["threshold"] for row in rows] == list(SWEEP_THRESHOLDS)
    sensitivities = [float(row["sensitivity"] or 0.0) for row in rows]
    assert sensitivities == sorted(sensitivities, reverse=True)  # a higher threshold never finds more


def test_any_finding_flags_an_image_when_one_label_crosses_its_threshold() -> None:
    labels = np.zeros((3, 14), dtype=np.float32)
    labels[0, 3] = 1  # abnormal
    probabilities = np.full((3, 14), 0.2)
    probabilities[0, 3] = 0.8  # flagged, rightly
    probabilities[1, 5] = 0.8  # flagged, wrongly (a normal image)
    flag = any_finding(labels, probabilities, dict.fromkeys(LABELS, 0.5))
    assert (flag["tp"], flag["fp"], flag["fn"], flag["tn"]) == (1, 1, 0, 1)
    assert flag["n_images"] == 3 and flag["n_abnormal"] == 1


def test_youden_j_counts_an_undefined_rate_as_zero() -> None:
    assert youden_j({"sensitivity": 0.75, "specificity": 0.5}) == pytest.approx(0.25)
    assert youden_j({"sensitivity": None, "specificity": 1.0}) == 0.0  # no positives to find
