"""Evaluation maths: AUROC, bootstrap intervals, operating thresholds, confusion counts (numpy only)."""

import numpy as np


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney with tie correction); None when a class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    positives, negatives = int(y_true.sum()), int((~y_true).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    rank_sum = ranks[y_true].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if len(unique) < len(values):  # average the ranks of ties
        sums = np.bincount(inverse, weights=ranks)
        ranks = (sums / counts)[inverse]
    return ranks


def roc_curve(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates, thresholds): one point per distinct score, from (0, 0).

    The point at thresholds[i] counts `score >= thresholds[i]` as positive; the first threshold is
    +inf (nothing positive). Raises ValueError when a class is absent (the curve is undefined).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y_true.sum()), int((~y_true).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("an ROC curve needs both positive and negative examples")
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    # Tied scores are one decision: keep only the last position of each run of equal scores.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]
    true_positives = np.cumsum(y_true[order])[last_of_run]
    false_positives = last_of_run + 1 - true_positives
    return (
        np.r_[0.0, false_positives / negatives],
        np.r_[0.0, true_positives / positives],
        np.r_[np.inf, sorted_scores[last_of_run]],
    )


def per_label_auroc(y_true: np.ndarray, scores: np.ndarray) -> list[float | None]:
    return [auroc(y_true[:, j], scores[:, j]) for j in range(y_true.shape[1])]


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
        for j in range(labels):
            value = auroc(y_true[chosen, j], scores[chosen, j])
            samples[r, j] = np.nan if value is None else value
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
