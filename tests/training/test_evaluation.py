"""Card metrics: thresholds from validation, AUROC with intervals per split."""

import json
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import SplitMetrics, load_model_card
from training.evaluation import (
    SPECIFICITY_FLOORS,
    inherited_thresholds,
    split_metrics,
    thresholds_at,
    thresholds_for,
)
from training.operating_point import any_finding, youden_j

VALIDATION_RUN = (
    Path(__file__).resolve().parents[2] / "models" / "chexnet-densenet121" / "phase1-validation-run"
)


def toy_split(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, 14)) < 0.3).astype(np.float32)
    labels[:, LABELS.index("Hernia")] = 0  # a label absent from the split
    return labels, np.clip(0.3 * labels + rng.random((n, 14)) * 0.7, 0, 1)


def flag_j(labels: np.ndarray, probabilities: np.ndarray, thresholds: dict[str, float]) -> float:
    return youden_j(any_finding(labels, probabilities, thresholds))


def test_thresholds_keep_the_chosen_specificity_floor_per_label() -> None:
    labels, probabilities = toy_split()
    thresholds, rule = thresholds_for(labels, probabilities)
    assert list(thresholds) == list(LABELS)
    assert thresholds["Hernia"] == 0.5  # absent from the split
    floor = next(f for f in SPECIFICITY_FLOORS if f"specificity >= {f:.2f}" in rule)
    for j, label in enumerate(LABELS):
        negatives = probabilities[labels[:, j] == 0, j]
        if label != "Hernia":
            assert (negatives < thresholds[label]).mean() >= floor, label


def test_the_floor_is_the_one_that_makes_the_any_finding_flag_most_informative() -> None:
    labels, probabilities = toy_split(seed=3)
    thresholds, rule = thresholds_for(labels, probabilities)
    scores = {
        f: flag_j(labels, probabilities, thresholds_at(labels, probabilities, f)) for f in SPECIFICITY_FLOORS
    }
    assert flag_j(labels, probabilities, thresholds) == max(scores.values())
    best = max(f for f, j in scores.items() if j == max(scores.values()))  # ties: the higher floor
    assert f"specificity >= {best:.2f}" in rule


def test_plain_youden_flags_every_film_and_the_floor_does_not() -> None:
    # 14 noisy labels, half the films normal: with Youden's J alone some label nearly always fires.
    rng = np.random.default_rng(5)
    labels = np.zeros((200, 14), dtype=np.float32)
    labels[:100] = rng.random((100, 14)) < 0.15
    probabilities = np.clip(0.25 * labels + rng.random((200, 14)), 0, 1)
    youden = thresholds_at(labels, probabilities, 0.0)
    chosen, _ = thresholds_for(labels, probabilities)
    assert any_finding(labels, probabilities, youden)["specificity"] < 0.1
    assert float(any_finding(labels, probabilities, chosen)["specificity"] or 0) > 0.3
    assert flag_j(labels, probabilities, chosen) > flag_j(labels, probabilities, youden)


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


def test_a_refit_adopts_the_validation_runs_thresholds_and_names_their_source(tmp_path: Path) -> None:
    card = load_model_card(VALIDATION_RUN)
    thresholds, rule = inherited_thresholds(VALIDATION_RUN)
    assert thresholds == card.thresholds and set(thresholds) == set(LABELS)
    assert rule == f"from {card.name} {card.version}, this recipe's validation run: {card.threshold_rule}"
    reordered = json.loads(card.model_dump_json()) | {"labels": list(reversed(LABELS))}
    (tmp_path / "model_card.json").write_text(json.dumps(reordered))
    with pytest.raises(ValueError, match="14 canonical labels in order"):
        inherited_thresholds(tmp_path)
