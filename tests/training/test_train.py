"""Training: official-list splits, distillation targets, and one smoke run's outputs."""

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from training import train as tf_train
from training.data import Record, read_label_table
from training.evaluate import read_splits

REPO = Path(__file__).resolve().parents[2]


def split_images(folder: Path, labels_csv: Path) -> dict[str, set[str]]:
    """The images of each split, from a model folder's splits.csv (read as evaluation reads it)."""
    splits = read_splits(folder / "splits.csv", read_label_table(labels_csv))
    return {name: {record.image for record in part} for name, part in splits.items()}


def record(image: str, patient: str, official: str | None = None, *positives: str) -> Record:
    labels = np.array([label in positives for label in LABELS], dtype=np.float32)
    return Record(image, Path(image), patient, labels, official)


def test_the_official_test_list_is_the_test_split() -> None:
    # 30 patients with two images each; the last 5 patients are on the official test list.
    records = [
        record(f"{i}.png", f"P{i // 2}", "test" if i >= 50 else "train_val", LABELS[i % 3]) for i in range(60)
    ]
    config = tf_train.TrainConfig(labels_csv="x.csv", out_dir="out", split=(0.7, 0.15, 0.15))
    splits = tf_train.make_splits(records, config)
    assert sorted(r.image for r in splits["test"]) == sorted(f"{i}.png" for i in range(50, 60))
    assert all(r.official_split == "train_val" for r in splits["train"] + splits["validation"])
    assert len(splits["train"]) + len(splits["validation"]) == 50
    assert len(splits["validation"]) >= 6  # about 0.15 / 0.85 of the official train_val images
    assert "official test_list.txt" in tf_train._split_rule(config, records)


def test_without_official_lists_the_split_is_by_patient() -> None:
    records = [record(f"{i}.png", f"P{i // 3}", None, LABELS[i % 14]) for i in range(60)]
    config = tf_train.TrainConfig(labels_csv="x.csv", out_dir="out")
    splits = tf_train.make_splits(records, config)
    assert sum(len(part) for part in splits.values()) == 60
    assert "patient-level" in tf_train._split_rule(config, records)


def test_teacher_probabilities_blend_into_the_targets(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.csv"
    header = "Image Index," + ",".join(f"prob_{label}" for label in LABELS)
    teacher.write_text(header + "\na.png," + ",".join(["0.5"] * 14) + "\n")
    records = [record("a.png", "1", None, "Mass"), record("b.png", "2", None, "Edema")]
    config = tf_train.TrainConfig(
        labels_csv="x.csv", out_dir="out", teacher_csv=str(teacher), teacher_weight=0.7
    )
    targets = tf_train.training_targets(records, config)
    mass, edema = LABELS.index("Mass"), LABELS.index("Edema")
    assert targets[0, mass] == pytest.approx(0.3 * 1 + 0.7 * 0.5)
    assert targets[0, edema] == pytest.approx(0.7 * 0.5)
    np.testing.assert_array_equal(targets[1], records[1].labels)  # no teacher for b.png: its labels


@pytest.mark.slow
def test_smoke_run_writes_a_loadable_model_and_a_valid_card(smoke_model: Path) -> None:
    import keras

    from cxr.model_card import load_model_card, verify_weights

    card = load_model_card(smoke_model)  # validates against the schema
    weights = verify_weights(card, smoke_model)  # sha256 matches
    model = keras.models.load_model(weights, compile=False)
    assert model.input_shape == (None, card.input_size, card.input_size, 3) == (None, 32, 32, 3)
    assert model.output_shape == (None, len(LABELS))
    assert model.get_layer(card.last_conv_layer) is not None
    assert card.metrics_for("validation") is not None
    assert set(card.thresholds) == set(LABELS)


@pytest.mark.slow
def test_smoke_run_splits_are_patient_level_and_match_the_card(smoke_model: Path) -> None:
    from cxr.model_card import load_model_card

    with open(smoke_model / "splits.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    card = load_model_card(smoke_model)
    sizes = {name: sum(row["split"] == name for row in rows) for name in ("train", "validation", "test")}
    assert sizes == {
        "train": card.training.n_train,
        "validation": card.training.n_validation,
        "test": card.training.n_test,
    }
    assert sum(sizes.values()) == 40
    homes: dict[str, set[str]] = {}
    for row in rows:
        homes.setdefault(row["PatientId"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in homes.values())


@pytest.mark.slow
def test_smoke_run_logs_the_validation_auroc(smoke_model: Path) -> None:
    with open(smoke_model / "training_log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and "val_mean_auroc" in rows[0] and "loss" in rows[0]
    assert np.isfinite(float(rows[0]["loss"]))


@pytest.mark.slow
def test_a_refit_trains_on_train_and_validation_and_keeps_the_test_split(
    smoke_model: Path, train_smoke: Callable[..., Path], nih_data: Path, tmp_path: Path
) -> None:
    from cxr.model_card import load_model_card, verify_weights

    # Another training seed too: it changes initialisation and batches, never the patient split.
    train_smoke(
        tmp_path, "--epochs", "2", "--refit", "--thresholds-from", str(smoke_model), "--train-seed", "8"
    )

    labels_csv = nih_data / "images_labels.csv"
    refit, held_out = split_images(tmp_path, labels_csv), split_images(smoke_model, labels_csv)
    assert refit["train"] == held_out["train"] | held_out["validation"]
    assert refit["validation"] == set()
    assert refit["test"] == held_out["test"]  # the same seed holds out the same patients

    card = load_model_card(tmp_path)
    verify_weights(card, tmp_path)
    assert card.training.n_train == len(refit["train"]) and card.training.n_validation == 0
    validation_run = load_model_card(smoke_model)
    assert card.thresholds == validation_run.thresholds
    assert card.threshold_rule.startswith(f"from {validation_run.name} {validation_run.version}")
    assert card.training.recipe["refit"] is True and "best_epoch" not in card.training.recipe
    assert card.training.recipe["train_seed"] == 8 and card.training.seed == validation_run.training.seed
    assert card.metrics == []  # no held-out validation to report
    with open(tmp_path / "training_log.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]  # every epoch, no early stop


def test_a_refit_needs_the_thresholds_of_its_validation_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    for option in (["--refit"], ["--thresholds-from", "m"]):
        with pytest.raises(SystemExit):
            main(["--labels-csv", "x.csv", "--out", str(tmp_path), *option])
        assert "--refit and --thresholds-from go together" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--thresholds-from"):
        tf_train.TrainConfig(labels_csv="x.csv", out_dir=str(tmp_path), refit=True)
    with pytest.raises(ValueError, match="--thresholds-from"):
        tf_train.TrainConfig(labels_csv="x.csv", out_dir=str(tmp_path), thresholds_from="m")
    with pytest.raises(FileNotFoundError):  # before any data is read or any epoch is run
        tf_train.train(
            tf_train.TrainConfig(labels_csv="x.csv", out_dir=str(tmp_path), refit=True, thresholds_from="m")
        )
