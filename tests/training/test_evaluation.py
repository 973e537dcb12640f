"""Card metrics: thresholds from validation, AUROC with intervals per split."""

import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import SplitMetrics
from training.evaluation import split_metrics, thresholds_for


def toy_split(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 14)) < 0.3).astype(np.float32)
    labels[:, LABELS.index("Hernia")] = 0  # a label absent from the split
    return labels, np.clip(0.3 * labels + rng.random((n, 14)) * 0.7, 0, 1)


def test_thresholds_are_youden_per_label_and_one_half_for_an_absent_label() -> None:
    labels, probabilities = toy_split()
    thresholds = thresholds_for(labels, probabilities)
    assert list(thresholds) == list(LABELS)
    assert thresholds["Hernia"] == 0.5
    assert all(0.0 <= value <= 1.0 for value in thresholds.values())


def test_split_metrics_fill_the_card_schema() -> None:
    labels, probabilities = toy_split()
    metrics = split_metrics("test", labels, probabilities, bootstrap_rounds=30)
    SplitMetrics.model_validate(metrics.model_dump())
    assert metrics.n_images == 80
    assert metrics.per_label["Hernia"].auroc is None and metrics.per_label["Hernia"].ci_low is None
    mass = metrics.per_label["Mass"]
    assert mass.ci_low is not None and mass.ci_high is not None and mass.auroc is not None
    assert mass.ci_low <= mass.auroc <= mass.ci_high
    assert mass.n_positive + mass.n_negative == 80
    assert metrics.mean_auroc == pytest.approx(
        np.mean([m.auroc for m in metrics.per_label.values() if m.auroc is not None])
    )


def test_no_bootstrap_means_no_intervals() -> None:
    labels, probabilities = toy_split()
    metrics = split_metrics("validation", labels, probabilities, bootstrap_rounds=0)
    assert metrics.mean_auroc_ci_low is None and metrics.per_label["Mass"].ci_high is None
