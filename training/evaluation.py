"""Turn labels and probabilities into the model card's metrics and thresholds."""

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import LabelMetrics, SplitMetrics
from training.metrics import bootstrap_auroc, per_label_auroc, youden_threshold

THRESHOLD_RULE = "Youden's J (sensitivity + specificity - 1) maximised per label on the validation split"


def thresholds_for(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Operating threshold per label: Youden's J on the given (validation) split."""
    return {
        label: round(youden_threshold(labels[:, j], probabilities[:, j]), 6) for j, label in enumerate(LABELS)
    }


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
