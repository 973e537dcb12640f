"""Side-by-side AUROC with a reference model (a published CheXNet reproduction) on the same images.

The reference's probabilities exist for most, not all, of our images, so both models are scored
on the common subset only, and the report says how many images that is.
"""

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import SplitMetrics
from training.data import LabelTableError
from training.evaluation import split_metrics


class NoCommonImagesError(ValueError):
    """The reference has no prediction for any image of the split."""


@dataclass(frozen=True)
class ReferenceComparison:
    split: str
    n_split: int  # images in our split
    missing: list[str]  # our images without a reference prediction
    ours: SplitMetrics  # on the common subset
    reference: SplitMetrics  # on the common subset
    published: dict[str, float]  # the reference's own AUROC on the official test set (may be empty)

    @property
    def n_common(self) -> int:
        return self.ours.n_images


def read_published_aurocs(csv_path: str | Path) -> dict[str, float]:
    """`label,auc` rows -> {label: auc}; every label must be known, each at most once."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise LabelTableError(f"{csv_path}: reference AUROC table not found")
    published: dict[str, float] = {}
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"label", "auc"} <= set(reader.fieldnames):
            raise LabelTableError(f"{csv_path}: expected the columns label,auc")
        for line, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip()
            if label not in LABELS or label in published:
                raise LabelTableError(f"{csv_path}, row {line}: unknown or repeated label {label!r}")
            try:
                published[label] = float(row["auc"])
            except (TypeError, ValueError):
                raise LabelTableError(f"{csv_path}, row {line}: auc {row['auc']!r} is not a number") from None
    return published


def compare_with_reference(
    split: str,
    images: Sequence[str],
    labels: np.ndarray,
    probabilities: np.ndarray,
    reference: Mapping[str, np.ndarray],
    published: Mapping[str, float],
    bootstrap_rounds: int,
    seed: int = 0,
) -> ReferenceComparison:
    """Our and the reference's AUROC (with bootstrap intervals) on the images both have scored."""
    common = [i for i, image in enumerate(images) if image in reference]
    missing = [image for image in images if image not in reference]
    if not common:
        raise NoCommonImagesError(
            f"the reference has no prediction for any of the {len(images)} {split} images"
        )
    reference_probabilities = np.stack([reference[images[i]] for i in common])
    common_labels = labels[common]
    return ReferenceComparison(
        split=split,
        n_split=len(images),
        missing=missing,
        ours=split_metrics(split, common_labels, probabilities[common], bootstrap_rounds, seed),
        reference=split_metrics(split, common_labels, reference_probabilities, bootstrap_rounds, seed),
        published=dict(published),
    )
