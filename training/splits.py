"""Patient-level train/validation/test splits and the leakage check."""

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from training.data import Record

SPLITS = ("train", "validation", "test")


class PatientLeakageError(RuntimeError):
    """A patient has images in more than one split."""


def split_by_patient(
    records: Sequence[Record], fractions: tuple[float, float, float], seed: int
) -> dict[str, list[Record]]:
    """Assign whole patients to splits, deterministic from `seed`, keeping label counts proportional.

    Greedy iterative stratification over patients: patients carrying the rarest labels are placed
    first, each into the split that most lacks that label (ties broken by how short the split is
    of its target size, then by a seeded random order).
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_patient[record.patient_id].append(record)
    rng = np.random.default_rng(seed)
    patients = sorted(by_patient)
    rng.shuffle(patients)
    patient_labels = {p: np.max([r.labels for r in by_patient[p]], axis=0) for p in patients}
    patient_sizes = {p: len(by_patient[p]) for p in patients}

    target = np.asarray(fractions, dtype=np.float64)
    totals = np.sum([patient_labels[p] for p in patients], axis=0)
    wanted_labels = np.outer(target, totals)  # (3, 14)
    wanted_images = target * len(records)
    placed_labels = np.zeros_like(wanted_labels)
    placed_images = np.zeros(3)

    # Rarest-label patients first; label-free patients last.
    def rarity(patient: str) -> float:
        positive = patient_labels[patient] > 0
        return float(np.min(totals[positive])) if positive.any() else np.inf

    assignment: dict[str, int] = {}
    for patient in sorted(patients, key=rarity):
        labels = patient_labels[patient]
        open_splits = [i for i in range(3) if target[i] > 0]
        if labels.any():
            rarest = int(np.argmin(np.where(labels > 0, totals, np.inf)))
            need = wanted_labels[:, rarest] - placed_labels[:, rarest]
        else:
            need = np.zeros(3)
        room = wanted_images - placed_images
        choice = max(open_splits, key=lambda i: (need[i], room[i], rng.random()))
        placed_labels[choice] += labels
        placed_images[choice] += patient_sizes[patient]
        assignment[patient] = choice

    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    for record in records:
        splits[SPLITS[assignment[record.patient_id]]].append(record)
    check_no_leakage(splits)
    return splits


def add_train_only(
    splits: Mapping[str, Sequence[Record]], train_only: Sequence[Record]
) -> tuple[dict[str, list[Record]], list[Record]]:
    """Train-only records (thumbnails) join the training split; those of a patient held out in
    validation or test are left out (returned), as training on them would leak that patient."""
    held_out = {record.patient_id for name in SPLITS[1:] for record in splits[name]}
    left_out = [record for record in train_only if record.patient_id in held_out]
    joined = {name: list(records) for name, records in splits.items()}
    joined["train"] += [record for record in train_only if record.patient_id not in held_out]
    return joined, left_out


def keep_in_train(splits: Mapping[str, Sequence[Record]], kept: Sequence[Record]) -> dict[str, list[Record]]:
    """Records that may only train (the patients a starting model learned from) join training."""
    joined = {name: list(records) for name, records in splits.items()}
    joined["train"] += list(kept)
    return joined


def fold_validation_into_train(splits: Mapping[str, Sequence[Record]]) -> dict[str, list[Record]]:
    """A refit's splits: the validation patients train too; the test patients stay held out."""
    return {
        "train": [*splits["train"], *splits["validation"]],
        "validation": [],
        "test": list(splits["test"]),
    }


class TrainOnlyHeldOutError(RuntimeError):
    """A train-only film (a thumbnail) is in the validation or test split."""


def check_no_leakage(splits: Mapping[str, Sequence[Record]]) -> None:
    """Refuse splits that share a patient (or an image), or hold out a train-only film."""
    owner: dict[str, str] = {}
    for split, records in splits.items():
        for record in records:
            if record.train_only and split != "train":
                raise TrainOnlyHeldOutError(
                    f"{record.image} (from the train-only {record.dataset}) is in the {split} split: "
                    "validation and test hold only full-resolution films"
                )
            previous = owner.setdefault(record.patient_id, split)
            if previous != split:
                raise PatientLeakageError(
                    f"patient {record.patient_id} is in both {previous} and {split} "
                    f"(image {record.image}); splits must be patient-level"
                )
