"""Yes/no decisions at given thresholds: per-label operating points, threshold sweeps, any-finding flag.

Thresholds are inputs here, never fitted: the operating ones come from the model card, where
they were chosen on the validation split. A rate whose denominator is zero is None (undefined),
not 0, so a label with no predicted positives does not show a precision of 0.
"""

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from cxr.labels import LABELS

SWEEP_THRESHOLDS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(1, 10))

Rates = dict[str, float | int | None]


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def decision_rates(y_true: ArrayLike, predicted: ArrayLike) -> Rates:
    """Counts, sensitivity (recall), specificity, PPV (precision), NPV, F1 and accuracy of decisions."""
    y_true = np.asarray(y_true).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    tp = int((predicted & y_true).sum())
    fp = int((predicted & ~y_true).sum())
    fn = int((~predicted & y_true).sum())
    tn = int((~predicted & ~y_true).sum())
    sensitivity, ppv = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
    f1 = None
    if sensitivity is not None and ppv is not None:
        f1 = 2 * ppv * sensitivity / (ppv + sensitivity) if ppv + sensitivity else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "sensitivity": sensitivity,
        "specificity": _ratio(tn, tn + fp),
        "ppv": ppv,
        "npv": _ratio(tn, tn + fn),
        "f1": f1,
        "accuracy": _ratio(tp + tn, len(y_true)),
    }


def youden_j(rates: Rates) -> float:
    """Sensitivity + specificity - 1 of decision rates; an undefined rate counts as 0."""
    return float(rates["sensitivity"] or 0.0) + float(rates["specificity"] or 0.0) - 1.0


def operating_points(
    labels: np.ndarray, probabilities: np.ndarray, thresholds: Mapping[str, float]
) -> dict[str, Rates]:
    """Per label: the threshold and the decision rates at it (finding if p >= threshold)."""
    points: dict[str, Rates] = {}
    for j, label in enumerate(LABELS):
        threshold = float(thresholds[label])
        points[label] = {
            "threshold": threshold,
            **decision_rates(labels[:, j], probabilities[:, j] >= threshold),
        }
    return points


def threshold_sweep(
    labels: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float] = SWEEP_THRESHOLDS
) -> dict[str, list[Rates]]:
    """Per label, the decision rates at each of `thresholds` (to choose another operating point)."""
    return {
        label: [
            {"threshold": float(t), **decision_rates(labels[:, j], probabilities[:, j] >= t)}
            for t in thresholds
        ]
        for j, label in enumerate(LABELS)
    }


def any_finding(labels: np.ndarray, probabilities: np.ndarray, thresholds: Mapping[str, float]) -> Rates:
    """The flag "some label is at or above its threshold" against the truth "not No Finding"."""
    cut = np.array([thresholds[label] for label in LABELS], dtype=np.float64)
    flagged = np.asarray(probabilities >= cut).any(axis=1)
    abnormal = np.asarray(labels, dtype=bool).any(axis=1)
    return {"n_images": len(labels), "n_abnormal": int(abnormal.sum()), **decision_rates(abnormal, flagged)}
