"""Evaluation maths: AUROC and ROC curves (scikit-learn), bootstrap intervals, operating thresholds,
confusion counts."""

import numpy as np
from sklearn import metrics as sk_metrics


def _both_classes(y_true: np.ndarray) -> bool:
    return bool(y_true.any()) and not bool(y_true.all())


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count one half); None when a class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    if not _both_classes(y_true):
        return None
    return float(sk_metrics.roc_auc_score(y_true, np.asarray(scores, dtype=np.float64)))


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates, thresholds): one point per distinct score, from (0, 0).

    The point at thresholds[i] counts `score >= thresholds[i]` as positive; the first threshold is
    +inf (nothing positive). Raises ValueError when a class is absent (the curve is undefined).
    """
    y_true = np.asarray(y_true).astype(bool)
    if not _both_classes(y_true):
        raise ValueError("an ROC curve needs both positive and negative examples")
    fpr, tpr, thresholds = sk_metrics.roc_curve(
        y_true, np.asarray(scores, dtype=np.float64), drop_intermediate=False
    )
    return fpr, tpr, thresholds


def per_label_auroc(y_true: np.ndarray, scores: np.ndarray) -> list[float | None]:
    """AUROC of each column; None for a column without both classes."""
    y_true = np.asarray(y_true).astype(bool)
    defined = [j for j in range(y_true.shape[1]) if _both_classes(y_true[:, j])]
    values: list[float | None] = [None] * y_true.shape[1]
    if defined:
        # One multi-label call: scikit-learn validates the inputs once instead of once per label.
        aurocs = sk_metrics.roc_auc_score(
            y_true[:, defined], np.asarray(scores, dtype=np.float64)[:, defined], average=None
        )
        for j, value in zip(defined, np.atleast_1d(aurocs), strict=True):
            values[j] = float(value)
    return values


def mean_auroc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    values = [value for value in per_label_auroc(y_true, scores) if value is not None]
    return float(np.mean(values)) if values else None


def bootstrap_auroc(
    y_true: np.ndarray, scores: np.ndarray, rounds: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals: ((14, 2) per-label bounds, (2,) bounds of the mean over labels).

    Images are resampled with replacement; a label's resample without both classes is skipped.
    """
    rng = np.random.default_rng(seed)
    n, labels = y_true.shape
    samples = np.full((rounds, labels), np.nan)
    for r in range(rounds):
        chosen = rng.integers(0, n, size=n)
        values = per_label_auroc(y_true[chosen], scores[chosen])
        samples[r] = [np.nan if value is None else value for value in values]
    per_label = np.full((labels, 2), np.nan)
    for j in range(labels):
        column = samples[:, j][~np.isnan(samples[:, j])]
        if len(column):
            per_label[j] = np.percentile(column, [2.5, 97.5])
    # Mean over the labels defined in each resample; a resample with none defined is dropped
    # (np.nanmean would warn on it).
    defined = (~np.isnan(samples)).sum(axis=1)
    means = np.nansum(samples, axis=1)[defined > 0] / defined[defined > 0]
    mean_bounds = np.percentile(means, [2.5, 97.5]) if len(means) else np.full(2, np.nan)
    return per_label, mean_bounds


def paired_bootstrap_difference(
    y_true: np.ndarray, scores: np.ndarray, baseline: np.ndarray, rounds: int = 1000, seed: int = 0
) -> tuple[float, np.ndarray, float]:
    """Mean AUROC of `scores` minus that of `baseline` on the same images: (difference, its 95%
    percentile interval, share of resamples where it is <= 0). Both models see the same resamples."""
    rng = np.random.default_rng(seed)
    n = len(y_true)

    def difference(chosen: np.ndarray) -> float | None:
        ours, theirs = (
            per_label_auroc(y_true[chosen], scores[chosen]),
            per_label_auroc(y_true[chosen], baseline[chosen]),
        )
        pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if a is not None and b is not None]
        return float(np.mean([a - b for a, b in pairs])) if pairs else None

    observed = difference(np.arange(n))
    if observed is None:
        raise ValueError("no label has both classes among these images")
    samples = np.array(
        [d for _ in range(rounds) if (d := difference(rng.integers(0, n, size=n))) is not None]
    )
    return observed, np.percentile(samples, [2.5, 97.5]), float(np.mean(samples <= 0))


def youden_threshold(y_true: np.ndarray, scores: np.ndarray, min_specificity: float = 0.0) -> float:
    """Threshold maximising sensitivity + specificity - 1 (Youden's J) among those whose specificity
    is at least `min_specificity`; 0.5 when a class is absent.

    The candidates are the scores themselves (a score at or above the threshold is a finding) and
    one just above the highest score, which no image reaches (specificity 1).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if y_true.all() or not y_true.any():
        return 0.5
    best_threshold, best_j = 0.5, -np.inf
    for threshold in [*np.unique(scores), np.nextafter(scores.max(), np.inf)]:
        predicted = scores >= threshold
        sensitivity = (predicted & y_true).sum() / y_true.sum()
        specificity = (~predicted & ~y_true).sum() / (~y_true).sum()
        if specificity >= min_specificity and sensitivity + specificity - 1 > best_j:
            best_j, best_threshold = sensitivity + specificity - 1, float(threshold)
    return best_threshold


def confusion(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Counts and rates of one label at one threshold."""
    y_true = np.asarray(y_true).astype(bool)
    predicted = np.asarray(scores) >= threshold
    tp = int((predicted & y_true).sum())
    fp = int((predicted & ~y_true).sum())
    fn = int((~predicted & y_true).sum())
    tn = int((~predicted & ~y_true).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": (tp + tn) / max(len(y_true), 1),
    }
