"""Evaluation figures as PNG files: ROC curves per label, class balance before and after weighting.

Figures are built with matplotlib's object interface (Figure + Agg canvas), never pyplot, so
nothing depends on a display or on global pyplot state.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cxr.labels import LABELS
from training.metrics import auroc, roc_curve

DPI = 110


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=DPI)
    return path


def plot_roc_curves(
    path: Path,
    labels: np.ndarray,
    probabilities: np.ndarray,
    title: str,
    reference: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """One panel per label: our ROC curve and, when given, the reference's on its (labels, probabilities)."""
    figure = Figure(figsize=(13, 13), layout="constrained")
    axes = figure.subplots(4, 4, sharex=True, sharey=True).ravel()
    for j, label in enumerate(LABELS):
        ax = axes[j]
        ax.plot([0, 1], [0, 1], color="0.8", linewidth=0.8)
        curves = [("ours", labels, probabilities, "C0", "-")]
        if reference is not None:
            curves.append(("reference", reference[0], reference[1], "C3", "--"))
        for name, truth, scores, colour, style in curves:
            area = auroc(truth[:, j], scores[:, j])
            if area is None:
                continue
            fpr, tpr, _ = roc_curve(truth[:, j], scores[:, j])
            ax.plot(
                fpr, tpr, color=colour, linestyle=style, drawstyle="steps-post", label=f"{name} {area:.2f}"
            )
        positives = int(labels[:, j].sum())
        ax.set_title(f"{label} (n+ = {positives})", fontsize=10)
        if ax.lines[1:]:
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "one class only", ha="center", va="center", fontsize=9)
        ax.set_aspect("equal")
    for ax in axes[len(LABELS) :]:
        ax.set_visible(False)
    for ax in axes[len(LABELS) - 4 : len(LABELS)]:  # the lowest visible panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.set_xlabel("1 - specificity")
    for ax in axes[::4]:
        ax.set_ylabel("sensitivity")
    figure.suptitle(title)
    return _save(figure, path)


def plot_class_balance(path: Path, weights: Mapping[str, Mapping[str, float]], title: str) -> Path:
    """Per label: positive vs negative share of the loss, unweighted (frequencies) and weighted.

    `weights[label]` holds freq_pos, freq_neg, w_pos, w_neg of the training split.
    """
    freq_pos = np.array([weights[label]["freq_pos"] for label in LABELS])
    freq_neg = np.array([weights[label]["freq_neg"] for label in LABELS])
    w_pos = np.array([weights[label]["w_pos"] for label in LABELS])
    w_neg = np.array([weights[label]["w_neg"] for label in LABELS])
    figure = Figure(figsize=(12, 8), layout="constrained")
    panels = figure.subplots(2, 1, sharex=True)
    positions = np.arange(len(LABELS))
    width = 0.4
    for ax, (positive, negative, heading) in zip(
        panels,
        (
            (freq_pos, freq_neg, "before weighting: frequency"),
            (w_pos * freq_pos, w_neg * freq_neg, "after weighting: w_pos * freq_pos vs w_neg * freq_neg"),
        ),
        strict=True,
    ):
        ax.bar(positions - width / 2, positive, width, label="positive", color="C3")
        ax.bar(positions + width / 2, negative, width, label="negative", color="C0")
        ax.set_title(heading, fontsize=10)
        ax.set_ylabel("contribution to the loss")
        ax.legend(fontsize=8)
    panels[-1].set_xticks(positions, LABELS, rotation=45, ha="right")
    figure.suptitle(title)
    return _save(figure, path)
