"""The 14 ChestX-ray14 pathologies in the project's canonical order."""

from collections.abc import Iterable, Sequence

LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)

# Output order of the course model whose weights (`pretrained_model.h5`) can be imported.
COURSE_LABELS: tuple[str, ...] = (
    "Cardiomegaly",
    "Emphysema",
    "Effusion",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Atelectasis",
    "Pneumothorax",
    "Pleural_Thickening",
    "Pneumonia",
    "Fibrosis",
    "Edema",
    "Consolidation",
)

NO_FINDING = "No Finding"


class UnknownLabelError(ValueError):
    """A label name that is not one of LABELS."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown label {name!r}; expected one of: {', '.join(LABELS)}")
        self.name = name


def label_index(name: str) -> int:
    """Position of `name` in LABELS."""
    try:
        return LABELS.index(name)
    except ValueError:
        raise UnknownLabelError(name) from None


def reorder_indices(source: Sequence[str], target: Sequence[str] = LABELS) -> list[int]:
    """Indices into `source` that put its columns in `target` order (same set of names)."""
    for name in source:
        if name not in target:
            raise UnknownLabelError(name)
    missing = [name for name in target if name not in source]
    if missing:
        raise ValueError(f"labels missing from source order: {', '.join(missing)}")
    return [list(source).index(name) for name in target]


def validate_labels(names: Iterable[str]) -> list[str]:
    """Return the names, in canonical order and without duplicates, after checking each one."""
    wanted = set()
    for name in names:
        label_index(name)
        wanted.add(name)
    return [name for name in LABELS if name in wanted]
