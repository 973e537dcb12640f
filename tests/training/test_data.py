"""Label tables: both layouts read to the same records; every refusal names the file and the row."""

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from training.data import (
    LabelTableError,
    data_sources,
    labels_matrix,
    read_datasets,
    read_label_table,
    read_teacher,
    read_teachers,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OFFICIAL_HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID\n"
ONE_HOT_HEADER = "Image," + ",".join(LABELS) + ",PatientId\n"


def one_hot_row(image: str, patient: str, *positives: str) -> str:
    return ",".join([image, *("1" if label in positives else "0" for label in LABELS), patient]) + "\n"


def write_table(folder: Path, name: str, text: str, images: tuple[str, ...] = ()) -> Path:
    """A label table in `folder` and (empty) image files beside it: data.py only checks they exist."""
    for image in images:
        (folder / image).touch()
    path = folder / name
    path.write_text(text)
    return path


def test_both_fixture_layouts_read_to_the_same_records() -> None:
    official = read_label_table(FIXTURES / "Data_Entry_2017_sample.csv")
    one_hot = read_label_table(FIXTURES / "labels_onehot.csv")
    assert [r.image for r in official] == [r.image for r in one_hot]
    assert [r.patient_id for r in official] == [r.patient_id for r in one_hot]
    assert [r.path for r in official] == [r.path for r in one_hot]
    np.testing.assert_array_equal(labels_matrix(official), labels_matrix(one_hot))


def test_labels_land_in_canonical_columns() -> None:
    records = {r.image: r for r in read_label_table(FIXTURES / "Data_Entry_2017_sample.csv")}
    assert [LABELS[j] for j in np.flatnonzero(records["00000001_000.png"].labels)] == ["Cardiomegaly"]
    assert not records["00000002_000.png"].labels.any()  # No Finding
    assert records["00000404_000.png"].labels.sum() == 5
    assert records["00000001_000.png"].labels.dtype == np.float32


def test_gzipped_official_table_reads_the_same(tmp_path: Path) -> None:
    for png in FIXTURES.glob("*.png"):
        shutil.copy(png, tmp_path)
    source = FIXTURES / "Data_Entry_2017_sample.csv"
    (tmp_path / "Data_Entry_2017.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
    zipped = read_label_table(tmp_path / "Data_Entry_2017.csv.gz")
    np.testing.assert_array_equal(labels_matrix(zipped), labels_matrix(read_label_table(source)))


def test_official_layout_finds_images_in_the_images_subfolders(tmp_path: Path) -> None:
    for folder, image in (("images_001", "00000001_000.png"), ("images_002", "00000002_000.png")):
        (tmp_path / folder / "images").mkdir(parents=True)
        (tmp_path / folder / "images" / image).touch()
    table = write_table(
        tmp_path,
        "Data_Entry_2017.csv",
        OFFICIAL_HEADER + "00000001_000.png,Cardiomegaly,0,1\n00000002_000.png,No Finding,0,2\n",
    )
    records = read_label_table(table)
    assert [r.path for r in records] == [
        tmp_path / "images_001" / "images" / "00000001_000.png",
        tmp_path / "images_002" / "images" / "00000002_000.png",
    ]


def test_images_dir_overrides_the_folder_of_the_table(tmp_path: Path) -> None:
    records = read_label_table(FIXTURES / "labels_onehot.csv", images_dir=FIXTURES)
    assert all(r.path.parent == FIXTURES for r in records)
    with pytest.raises(LabelTableError, match="not found under"):
        read_label_table(FIXTURES / "labels_onehot.csv", images_dir=tmp_path)


def test_official_train_and_test_lists_are_read(tmp_path: Path) -> None:
    images = ("a.png", "b.png", "c.png")
    text = OFFICIAL_HEADER + "a.png,No Finding,0,1\nb.png,Mass,0,2\nc.png,Edema,0,3\n"
    table = write_table(tmp_path, "Data_Entry_2017.csv", text, images)
    (tmp_path / "train_val_list.txt").write_text("a.png\nb.png\n")
    (tmp_path / "test_list.txt").write_text("c.png\n")
    assert [r.official_split for r in read_label_table(table)] == ["train_val", "train_val", "test"]


def test_without_official_lists_no_record_has_an_official_split() -> None:
    assert all(r.official_split is None for r in read_label_table(FIXTURES / "Data_Entry_2017_sample.csv"))


OFFICIAL_ERRORS = [
    ("a.png,Cardiomegaly|Flying_Saucer,0,1\n", "row 2: unknown label 'Flying_Saucer'"),
    ("a.png,No Finding|Mass,0,1\n", "row 2: 'No Finding' together with other findings"),
    ("a.png,,0,1\n", "row 2: empty Finding Labels"),
    ("a.png,Mass,0,\n", "row 2: empty Image Index or Patient ID"),
    (
        "a.png,Mass,0,1\nb.png,Mass,0,2\na.png,Edema,0,1\n",
        "row 4: duplicate image a.png \\(first at row 2\\)",
    ),
    ("a.png,Mass,0,1\nmissing.png,Mass,0,2\n", "row 3: image file missing.png not found"),
]


@pytest.mark.parametrize(("rows", "message"), OFFICIAL_ERRORS)
def test_official_layout_errors_name_file_and_row(tmp_path: Path, rows: str, message: str) -> None:
    table = write_table(tmp_path, "Data_Entry_2017.csv", OFFICIAL_HEADER + rows, ("a.png", "b.png"))
    with pytest.raises(LabelTableError, match=f"Data_Entry_2017.csv, {message}"):
        read_label_table(table)


ONE_HOT_ERRORS = [
    (
        ONE_HOT_HEADER.replace("PatientId", "Flying_Saucer,PatientId"),
        one_hot_row("a.png", "1").replace(",1\n", ",0,1\n"),
        "row 2: unknown label column\\(s\\) 'Flying_Saucer'",
    ),
    (ONE_HOT_HEADER, one_hot_row("a.png", "1", "Mass").replace(",1,", ",2,", 1), "row 2: Mass is '2'"),
    (ONE_HOT_HEADER, one_hot_row("a.png", "1") + one_hot_row("a.png", "1"), "row 3: duplicate image a.png"),
    (ONE_HOT_HEADER, one_hot_row("a.png", "1") + one_hot_row("gone.png", "2"), "row 3: image file gone.png"),
    (ONE_HOT_HEADER, one_hot_row("", "1"), "row 2: empty Image or PatientId"),
    (ONE_HOT_HEADER.replace(",Hernia", ""), "", "label columns missing: Hernia"),
]


@pytest.mark.parametrize(("header", "rows", "message"), ONE_HOT_ERRORS)
def test_one_hot_layout_errors_name_file_and_row(
    tmp_path: Path, header: str, rows: str, message: str
) -> None:
    table = write_table(tmp_path, "labels.csv", header + (rows or one_hot_row("a.png", "1")), ("a.png",))
    with pytest.raises(LabelTableError, match=f"labels.csv, {message}" if "row" in message else message):
        read_label_table(table)


@pytest.mark.parametrize("header", ["Image,Label,Patient\n", "Image Index,Patient ID\n", "\n"])
def test_an_unknown_header_is_refused(tmp_path: Path, header: str) -> None:
    table = write_table(tmp_path, "labels.csv", header + "a.png,Mass,1\n", ("a.png",))
    with pytest.raises(LabelTableError, match=r"labels\.csv: header has neither"):
        read_label_table(table)


def test_an_empty_or_absent_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelTableError, match=r"labels\.csv: no rows"):
        read_label_table(write_table(tmp_path, "labels.csv", ONE_HOT_HEADER))
    with pytest.raises(LabelTableError, match=r"absent\.csv: label table not found"):
        read_label_table(tmp_path / "absent.csv")


def test_teacher_probabilities_come_back_in_canonical_order(tmp_path: Path) -> None:
    reversed_labels = LABELS[::-1]
    path = tmp_path / "teacher.csv"
    values = ",".join(str(0.01 * (LABELS.index(label) + 1)) for label in reversed_labels)
    path.write_text(
        "Image Index," + ",".join(f"prob_{label}" for label in reversed_labels) + f"\na.png,{values}\n"
    )
    np.testing.assert_allclose(read_teacher(path)["a.png"], 0.01 * np.arange(1, 15), rtol=1e-6)


def test_teacher_table_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "teacher.csv"
    path.write_text("Image Index,prob_Mass\na.png,0.5\n")
    with pytest.raises(LabelTableError, match=r"teacher\.csv, row 2: bad or missing prob_<label>"):
        read_teacher(path)


def test_the_nih_sample_reads_with_its_documented_label_counts(nih_data: Path) -> None:
    records = read_label_table(nih_data / "images_labels.csv")
    assert len(records) == 388
    counts = dict(zip(LABELS, labels_matrix(records).sum(axis=0).astype(int).tolist(), strict=True))
    assert counts["Atelectasis"] == 63 and counts["Hernia"] == 13 and counts["Infiltration"] == 71
    assert sum(not r.labels.any() for r in records) == 65  # "No Finding"


def dataset_dir(root: Path, name: str, rows: list[tuple[str, str]], teacher: bool = False) -> Path:
    """A dataset folder: images_labels.csv, (empty) images/ files, optionally reference/ teacher rows."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    write_table(folder, "images_labels.csv", ONE_HOT_HEADER + "".join(one_hot_row(i, p) for i, p in rows))
    for image, _ in rows:
        (folder / "images" / image).touch()
    if teacher:
        (folder / "reference").mkdir()
        (folder / "reference" / "aucs.csv").write_text("label,auc\nMass,0.8\n")  # not probabilities
        header = "Image Index," + ",".join(f"prob_{label}" for label in LABELS)
        lines = [f"{image}," + ",".join(["0.25"] * 14) for image, _ in rows]
        (folder / "reference" / "preds.csv").write_text("\n".join([header, *lines]) + "\n")
    return folder


def test_dataset_folders_combine_and_keep_their_origin(tmp_path: Path) -> None:
    first = dataset_dir(tmp_path, "first", [("a.png", "1"), ("b.png", "2")], teacher=True)
    thumbs = dataset_dir(tmp_path, "thumbs", [("c.png", "1")])
    sources = data_sources(None, None, [first], [thumbs])
    assert sources[0].teacher_csvs == (first / "reference" / "preds.csv",)  # the AUROC table is not one
    records = read_datasets(sources)
    assert [(r.image, r.patient_id, r.train_only, r.dataset) for r in records] == [
        ("a.png", "1", False, str(first)),
        ("b.png", "2", False, str(first)),
        ("c.png", "1", True, str(thumbs)),
    ]
    assert records[2].path == thumbs / "images" / "c.png"
    assert set(read_teachers([path for s in sources for path in s.teacher_csvs])) == {"a.png", "b.png"}


def test_an_image_name_in_two_folders_is_refused_naming_both(tmp_path: Path) -> None:
    first = dataset_dir(tmp_path, "first", [("a.png", "1")])
    second = dataset_dir(tmp_path, "second", [("b.png", "2"), ("a.png", "3")])
    with pytest.raises(LabelTableError, match=rf"a\.png is in both {first} and {second}"):
        read_datasets(data_sources(None, None, [first, second]))


def test_a_folder_without_a_label_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LabelTableError, match="not a dataset folder"):
        data_sources(None, None, [tmp_path])
    with pytest.raises(LabelTableError, match="no data"):
        data_sources(None)


def test_the_shared_folders_combine_without_duplicate_names(shared_datasets: list[Path]) -> None:
    nih, extra, thumbs = shared_datasets
    records = read_datasets(data_sources(None, None, [nih, extra], [thumbs]))
    assert len(records) == 388 + 320 + 935
    assert sum(r.train_only for r in records) == 935
    patients = {
        folder: {r.patient_id for r in records if r.dataset == str(folder)} for folder in shared_datasets
    }
    assert len(patients[nih] & patients[extra]) == 4 and len(patients[extra] & patients[thumbs]) == 18
