"""Turn labels and probabilities into the model card's metrics and thresholds."""

from pathlib import Path

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import LabelMetrics, SplitMetrics, load_model_card
from training.metrics import bootstrap_auroc, per_label_auroc, youden_threshold
from training.operating_point import any_finding, youden_j

# Youden's J alone, per label, makes the any-finding flag fire on nearly every film (14 chances):
# each label must also keep a specificity floor, and the floor is the one that makes the flag
# itself most informative on validation.
SPECIFICITY_FLOORS = (0.80, 0.85, 0.90, 0.95)


def threshold_rule(floor: float) -> str:
    floors = ", ".join(f"{f:.2f}" for f in SPECIFICITY_FLOORS)
    return (
        f"per label, the threshold with the largest Youden's J (sensitivity + specificity - 1) among those "
        f"keeping specificity >= {floor:.2f} on the validation split; the floor, from {floors}, is the one "
        "that maximises the any-finding flag's Youden's J on the validation split"
    )


def thresholds_at(labels: np.ndarray, probabilities: np.ndarray, min_specificity: float) -> dict[str, float]:
    """Per label: Youden's J threshold with at least `min_specificity` (0.5 for an absent label)."""
    return {
        label: round(youden_threshold(labels[:, j], probabilities[:, j], min_specificity), 6)
        for j, label in enumerate(LABELS)
    }


def thresholds_for(labels: np.ndarray, probabilities: np.ndarray) -> tuple[dict[str, float], str]:
    """Operating thresholds chosen on the given (validation) split, and the rule, naming the floor.

    Ties go to the higher floor (fewer false findings for the same flag quality).
    """
    best: tuple[float, float, dict[str, float]] | None = None
    for floor in SPECIFICITY_FLOORS:
        thresholds = thresholds_at(labels, probabilities, floor)
        j = youden_j(any_finding(labels, probabilities, thresholds))
        if best is None or j >= best[0]:
            best = (j, floor, thresholds)
    assert best is not None
    return best[2], threshold_rule(best[1])


def inherited_thresholds(model_dir: str | Path) -> tuple[dict[str, float], str]:
    """The thresholds of a validation run of the same recipe, for its refit.

    A refit has no held-out images to choose on, and thresholds chosen on its own training images
    are far too strict for new ones (the network fits its training positives).
    """
    source = load_model_card(model_dir)  # validated: the canonical labels, in order
    rule = f"from {source.name} {source.version}, this recipe's validation run: {source.threshold_rule}"
    return dict(source.thresholds), rule


def split_metrics(
    split: str, labels: np.ndarray, probabilities: np.ndarray, bootstrap_rounds: int = 1000, seed: int = 0
) -> SplitMetrics:
    """Per-label AUROC (with 95% bootstrap intervals when rounds > 0) and their mean."""
    aurocs = per_label_auroc(labels, probabilities)
    if bootstrap_rounds > 0:
        bounds, mean_bounds = bootstrap_auroc(labels, probabilities, bootstrap_rounds, seed)
    else:
        bounds, mean_bounds = np.full((len(LABELS), 2), np.nan), np.full(2, np.nan)
    per_label = {
        label: LabelMetrics(
            auroc=aurocs[j],
            ci_low=_finite(bounds[j, 0]),
            ci_high=_finite(bounds[j, 1]),
            n_positive=int(labels[:, j].sum()),
            n_negative=int(len(labels) - labels[:, j].sum()),
        )
        for j, label in enumerate(LABELS)
    }
    present = [value for value in aurocs if value is not None]
    return SplitMetrics(
        split=split,
        n_images=len(labels),
        mean_auroc=float(np.mean(present)) if present else None,
        mean_auroc_ci_low=_finite(mean_bounds[0]),
        mean_auroc_ci_high=_finite(mean_bounds[1]),
        per_label=per_label,
    )


def _finite(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
