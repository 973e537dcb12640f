"""Importing the course weights file: legacy .h5 layout in, canonical label order out."""

from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import pytest

from cxr.labels import COURSE_LABELS, LABELS, reorder_indices
from cxr.model_card import load_model_card, verify_weights
from cxr.preprocessing import preprocess_bytes
from training.import_weights import UNEVALUATED_THRESHOLD_RULE, import_weights

if TYPE_CHECKING:
    import keras

FIXTURE_IMAGE = Path(__file__).resolve().parents[1] / "fixtures" / "00000404_000.png"
SIZE = 32
MEAN, STD = 0.5, 0.25
# Keras 2 named the head layers after their class; the course file has those names, not ours.
KERAS2_NAMES = {"avg_pool": "global_average_pooling2d_1", "predictions": "dense_1"}


def write_legacy_weights(model: "keras.Model", path: Path) -> None:
    """The layout of Keras 2's `model.save_weights("x.h5")`, which Keras 3 only reads.

    Keras 3's save_weights refuses names not ending in .weights.h5 (its own, name-keyed format),
    so the legacy writer is called directly; the head layers are then renamed as Keras 2 named them.
    """
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
        for ours, theirs in KERAS2_NAMES.items():
            handle.move(ours, theirs)
        names = [name.decode() if isinstance(name, bytes) else name for name in handle.attrs["layer_names"]]
        handle.attrs["layer_names"] = [KERAS2_NAMES.get(name, name).encode() for name in names]


@pytest.fixture(scope="module")
def course_model(smoke_model: Path) -> "keras.Model":
    """A course-layout model (outputs in COURSE_LABELS order): the smoke model's backbone, a known head."""
    import keras

    from training.model import HEAD_LAYER, build_model

    smoke = keras.models.load_model(smoke_model / "model.keras", compile=False)
    course = build_model(SIZE, labels=COURSE_LABELS)
    course.set_weights(smoke.get_weights())
    kernel, _ = smoke.get_layer(HEAD_LAYER).get_weights()
    in_course_order = reorder_indices(LABELS, COURSE_LABELS)
    # Distinct biases make every output distinguishable, so a wrong permutation cannot pass.
    course.get_layer(HEAD_LAYER).set_weights(
        [kernel[:, in_course_order], np.linspace(-3, 3, 14, dtype=np.float32)]
    )
    return course


@pytest.fixture(scope="module")
def course_file(course_model: "keras.Model", tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("course") / "pretrained_model.h5"
    write_legacy_weights(course_model, path)
    return path


@pytest.fixture(scope="module")
def imported(course_file: Path, smoke_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.__main__ import main

    out = tmp_path_factory.mktemp("imported")
    exit_code = main(
        [
            "import-weights", str(course_file), "--out", str(out), "--input-size", str(SIZE),
            "--normalisation-mean", str(MEAN), "--normalisation-std", str(STD),
            "--splits-csv", str(smoke_model / "splits.csv"),
        ]
    )  # fmt: skip
    assert exit_code == 0
    return out


@pytest.mark.slow
def test_imported_outputs_are_the_course_outputs_in_canonical_order(
    course_model: "keras.Model", imported: Path
) -> None:
    import keras

    model = keras.models.load_model(imported / "model.keras", compile=False)
    image = preprocess_bytes(FIXTURE_IMAGE.read_bytes(), SIZE, MEAN, STD)[np.newaxis]
    canonical = np.asarray(model(image, training=False))[0]
    course = np.asarray(course_model(image, training=False))[0]
    for j, label in enumerate(LABELS):
        assert canonical[j] == pytest.approx(course[COURSE_LABELS.index(label)], abs=1e-6), label
    assert len(np.unique(np.round(canonical, 4))) == 14  # distinct outputs: the check has teeth


@pytest.mark.slow
def test_the_imported_card_is_valid_and_unevaluated(imported: Path, course_file: Path) -> None:
    card = load_model_card(imported)
    verify_weights(card, imported)
    assert card.input_size == SIZE
    assert (card.normalisation.mean, card.normalisation.std) == (MEAN, STD)
    assert set(card.thresholds.values()) == {0.5}
    assert card.threshold_rule == UNEVALUATED_THRESHOLD_RULE
    assert card.metrics == []
    assert card.training.recipe["imported_from"] == course_file.name
    assert (imported / "splits.csv").is_file()


@pytest.mark.slow
def test_evaluation_chooses_thresholds_of_imported_weights_on_validation(
    imported: Path, nih_data: Path, tmp_path: Path
) -> None:
    import shutil

    from training.evaluate import IMPORTED_NOTE, main

    model_dir = tmp_path / "model"
    shutil.copytree(imported, model_dir)
    labels_csv = str(nih_data / "images_labels.csv")
    assert main(["--model-dir", str(model_dir), "--labels-csv", labels_csv, "--bootstrap", "0"]) == 0
    card = load_model_card(model_dir)
    assert card.threshold_rule.endswith(IMPORTED_NOTE)
    assert set(card.thresholds.values()) != {0.5}
    assert [m.split for m in card.metrics] == ["validation", "test"]


@pytest.mark.slow
def test_a_file_of_another_layout_is_refused(tmp_path: Path) -> None:
    import keras

    from training.model import CourseWeightsError

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "other.h5"
    write_legacy_weights_plain(other, path)
    with pytest.raises(CourseWeightsError, match=r"other\.h5 does not fit the course model"):
        import_weights(path, tmp_path / "out", SIZE)


def write_legacy_weights_plain(model: "keras.Model", path: Path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)


def test_a_missing_weights_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="course weights file"):
        import_weights(tmp_path / "pretrained_model.h5", tmp_path / "out", SIZE)


@pytest.mark.parametrize(
    "extra",
    [
        ["--normalisation-mean", "0.5"],
        ["--input-size", "16"],
        ["--normalisation-mean", "0.5", "--normalisation-std", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, extra: list[str]) -> None:
    from training.import_weights import main

    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "w.h5"), "--out", str(tmp_path), "--input-size", str(SIZE), *extra])
    assert stopped.value.code == 2
