"""Read ChestX-ray14 label tables into one record list.

Two layouts are read:
- the official NIH metadata (`Data_Entry_2017*.csv[.gz]`): `Image Index`, pipe-separated
  `Finding Labels` ("No Finding" for none), `Patient ID`; images in one folder or spread over
  `images_*/images/`; `train_val_list.txt` / `test_list.txt` beside it are read when present;
- the one-hot layout (`Image`, the 14 label columns in any order, `PatientId`).

Several dataset folders combine into one record list (`read_datasets`): each folder holds a
label table (`images_labels.csv` in either layout, or the official `Data_Entry_2017*.csv[.gz]`),
its images (in the folder, `images/` or `images_*/images/`) and optionally `reference/` teacher
probabilities. An image name in two folders is refused; a PatientId is one patient in every folder.
"""

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.labels import LABELS, NO_FINDING

OFFICIAL_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
ONE_HOT_COLUMNS = ("Image", "PatientId")


class LabelTableError(ValueError):
    """A label table that cannot be trusted; the message names the file and the row."""


@dataclass(frozen=True)
class Record:
    image: str  # file name, e.g. 00000001_000.png
    path: Path
    patient_id: str
    labels: np.ndarray  # (14,) float32, canonical order
    official_split: str | None = None  # "train_val" or "test" when the official lists are present
    train_only: bool = False  # from a train-only folder (e.g. thumbnails): never validation or test
    dataset: str = ""  # the folder (or label table) it was read from


def read_label_table(
    csv_path: str | Path, images_dir: str | Path | None = None, *, train_only: bool = False
) -> list[Record]:
    """Read either layout (detected from the header) and resolve each image file."""
    csv_path = Path(csv_path)
    rows = list(_read_rows(csv_path))
    if not rows:
        raise LabelTableError(f"{csv_path}: no rows")
    header = rows[0][1].keys()
    if all(column in header for column in OFFICIAL_COLUMNS):
        parse = _parse_official
    elif all(column in header for column in ONE_HOT_COLUMNS):
        missing = [label for label in LABELS if label not in header]
        if missing:
            raise LabelTableError(f"{csv_path}: label columns missing: {', '.join(missing)}")
        parse = _parse_one_hot
    else:
        raise LabelTableError(
            f"{csv_path}: header has neither the official columns {OFFICIAL_COLUMNS} "
            f"nor the one-hot columns {ONE_HOT_COLUMNS} + labels"
        )

    locate = ImageLocator(Path(images_dir) if images_dir else csv_path.parent)
    official = _official_lists(csv_path.parent)
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        where = f"{csv_path}, row {line}"
        image, patient_id, labels = parse(row, where)
        if image in seen:
            raise LabelTableError(f"{where}: duplicate image {image} (first at row {seen[image]})")
        seen[image] = line
        records.append(
            Record(
                image,
                locate(image, where),
                patient_id,
                labels,
                official.get(image),
                train_only,
                str(csv_path.parent if csv_path.name == LABELS_FILE else csv_path),
            )
        )
    return records


def _read_rows(csv_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if not csv_path.is_file():
        raise LabelTableError(f"{csv_path}: label table not found")
    raw = csv_path.read_bytes()
    if csv_path.suffix == ".gz":
        raw = gzip.decompress(raw)
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    for index, row in enumerate(reader):
        yield index + 2, row  # row 1 is the header


def _parse_official(row: dict[str, str], where: str) -> tuple[str, str, np.ndarray]:
    image = (row.get("Image Index") or "").strip()
    patient = (row.get("Patient ID") or "").strip()
    if not image or not patient:
        raise LabelTableError(f"{where}: empty Image Index or Patient ID")
    labels = np.zeros(len(LABELS), dtype=np.float32)
    findings = [name.strip() for name in (row.get("Finding Labels") or "").split("|") if name.strip()]
    if not findings:
        raise LabelTableError(f"{where}: empty Finding Labels (use '{NO_FINDING}')")
    for name in findings:
        if name == NO_FINDING:
            if len(findings) > 1:
                raise LabelTableError(f"{where}: '{NO_FINDING}' together with other findings")
            continue
        if name not in LABELS:
            raise LabelTableError(f"{where}: unknown label {name!r}")
        labels[LABELS.index(name)] = 1.0
    return image, patient, labels


def _parse_one_hot(row: dict[str, str], where: str) -> tuple[str, str, np.ndarray]:
    image = (row.get("Image") or "").strip()
    patient = (row.get("PatientId") or "").strip()
    if not image or not patient:
        raise LabelTableError(f"{where}: empty Image or PatientId")
    unknown = [
        column
        for column in row
        if column not in LABELS and column not in ONE_HOT_COLUMNS and column is not None
    ]
    if unknown:
        raise LabelTableError(f"{where}: unknown label column(s) {', '.join(map(repr, unknown))}")
    labels = np.zeros(len(LABELS), dtype=np.float32)
    for index, label in enumerate(LABELS):
        value = (row.get(label) or "").strip()
        if value not in ("0", "1", "0.0", "1.0"):
            raise LabelTableError(f"{where}: {label} is {value!r}, expected 0 or 1")
        labels[index] = float(value)
    return image, patient, labels


class ImageLocator:
    """Find an image in a folder, or in the official `images_*/images/` sub-folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders = [root, root / "images", *sorted(root.glob("images_*/images"))]
        self._index: dict[str, Path] | None = None

    def __call__(self, image: str, where: str) -> Path:
        for folder in self.folders[:2]:
            candidate = folder / image
            if candidate.is_file():
                return candidate
        if self._index is None:
            self._index = {
                path.name: path for folder in self.folders[2:] for path in folder.iterdir() if path.is_file()
            }
        if image in self._index:
            return self._index[image]
        raise LabelTableError(f"{where}: image file {image} not found under {self.root}")


def _official_lists(folder: Path) -> dict[str, str]:
    membership: dict[str, str] = {}
    for split, file_name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        path = folder / file_name
        if path.is_file():
            for name in path.read_text().split():
                membership[name] = split
    return membership


def labels_matrix(records: list[Record]) -> np.ndarray:
    return np.stack([record.labels for record in records]).astype(np.float32)


def read_teacher(csv_path: str | Path) -> dict[str, np.ndarray]:
    """Teacher probabilities (`Image Index`, `prob_<label>` columns in any order), canonical order."""
    csv_path = Path(csv_path)
    teacher: dict[str, np.ndarray] = {}
    for line, row in _read_rows(csv_path):
        where = f"{csv_path}, row {line}"
        image = (row.get("Image Index") or row.get("Image") or "").strip()
        try:
            probabilities = np.array([float(row[f"prob_{label}"]) for label in LABELS], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as error:
            raise LabelTableError(f"{where}: bad or missing prob_<label> column ({error})") from None
        if not image or image in teacher:
            raise LabelTableError(f"{where}: empty or duplicate image {image!r}")
        teacher[image] = np.clip(probabilities, 0.0, 1.0)
    return teacher


LABELS_FILE = "images_labels.csv"
REFERENCE_DIR = "reference"


@dataclass(frozen=True)
class DatasetSource:
    """Where one dataset's labels, images and (optional) teacher probabilities are."""

    labels_csv: Path
    images_dir: Path | None = None  # None: beside the label table
    teacher_csvs: tuple[Path, ...] = ()
    train_only: bool = False


def dataset_folder(folder: str | Path, train_only: bool = False) -> DatasetSource:
    """A dataset folder: its label table, and the teacher tables (prob_<label> columns) in reference/."""
    folder = Path(folder)
    candidates = [folder / LABELS_FILE, *sorted(folder.glob("Data_Entry_2017*.csv*"))]
    labels_csv = next((path for path in candidates if path.is_file()), None)
    if labels_csv is None:
        raise LabelTableError(
            f"{folder}: not a dataset folder (no {LABELS_FILE} or Data_Entry_2017*.csv[.gz] in it)"
        )
    teachers = tuple(
        path for path in sorted((folder / REFERENCE_DIR).glob("*.csv")) if _has_probability_columns(path)
    )
    return DatasetSource(labels_csv, None, teachers, train_only)


def _has_probability_columns(csv_path: Path) -> bool:
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    return any(column.startswith("prob_") for column in header)


def data_sources(
    labels_csv: str | Path | None,
    images_dir: str | Path | None = None,
    datasets: Sequence[str | Path] = (),
    train_only_datasets: Sequence[str | Path] = (),
) -> list[DatasetSource]:
    """The sources named on a command line: a label table (with its images folder) and folders."""
    images = Path(images_dir) if images_dir else None
    sources = [DatasetSource(Path(labels_csv), images)] if labels_csv else []
    sources += [dataset_folder(folder) for folder in datasets]
    sources += [dataset_folder(folder, train_only=True) for folder in train_only_datasets]
    if not sources:
        raise LabelTableError("no data: give a label table (--labels-csv) or at least one --dataset folder")
    return sources


def read_datasets(sources: list[DatasetSource]) -> list[Record]:
    """The records of every source, in order; an image name in two sources is refused, naming both."""
    records: list[Record] = []
    home: dict[str, str] = {}
    for source in sources:
        for record in read_label_table(source.labels_csv, source.images_dir, train_only=source.train_only):
            if record.image in home:
                raise LabelTableError(
                    f"image {record.image} is in both {home[record.image]} and {record.dataset}: "
                    "image names must be unique across the combined datasets"
                )
            home[record.image] = record.dataset
            records.append(record)
    return records


def read_teachers(csv_paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """The teacher probabilities of several tables; an image in two tables is refused, naming both."""
    teacher: dict[str, np.ndarray] = {}
    source: dict[str, Path] = {}
    for csv_path in csv_paths:
        for image, probabilities in read_teacher(csv_path).items():
            if image in teacher:
                raise LabelTableError(
                    f"teacher probabilities for {image} in both {source[image]} and {csv_path}"
                )
            teacher[image], source[image] = probabilities, Path(csv_path)
    return teacher
