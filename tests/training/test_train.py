"""Training: official-list splits, distillation targets, and one smoke run's outputs."""

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from training import train as tf_train
from training.data import Record, read_datasets, read_label_table
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


def test_patients_a_starting_model_learned_from_only_train(tmp_path: Path) -> None:
    records = [record(f"{i}.png", f"P{i // 2}", None, LABELS[i % 5]) for i in range(80)]
    ancestor = tmp_path / "ancestor"
    ancestor.mkdir()
    rows = [
        f"{i}.png,P{i // 2},{'test' if i >= 60 else 'train' if i % 4 else 'validation'}" for i in range(80)
    ]
    (ancestor / "splits.csv").write_text("Image,PatientId,split\n" + "\n".join(rows) + "\n")
    config = tf_train.TrainConfig(labels_csv="x.csv", out_dir="out", init_from=str(ancestor))
    splits = tf_train.make_splits(records, config)

    learned = {f"P{i // 2}" for i in range(60)}  # its train and validation patients
    assert learned <= {r.patient_id for r in splits["train"]}
    held_out = splits["validation"] + splits["test"]
    assert held_out and all(r.patient_id not in learned for r in held_out)
    assert sum(len(part) for part in splits.values()) == 80
    with pytest.raises(FileNotFoundError, match=r"splits\.csv"):
        tf_train.make_splits(
            records, tf_train.TrainConfig(labels_csv="x.csv", out_dir="o", init_from="nowhere")
        )


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


@pytest.mark.slow
def test_a_run_can_start_from_a_model_at_another_input_size(
    smoke_model: Path, train_smoke: Callable[..., Path], nih_data: Path, tmp_path: Path
) -> None:
    import keras

    from cxr.model_card import load_model_card

    # Learning rate 0: the convolutions keep the starting model's values (to the float rounding of the
    # weight average that is shipped), where this run's own initialisation (another seed) would not.
    train_smoke(
        tmp_path,
        "--init-from",
        str(smoke_model),
        "--input-size",
        "64",
        "--learning-rate",
        "0",
        "--max-images",
        "80",
        "--train-seed",
        "8",
    )
    start = load_model_card(smoke_model)
    card = load_model_card(tmp_path)
    assert card.input_size == 64 and start.input_size == 32
    assert (
        card.training.recipe["initial_weights"]
        == f"{start.name} {start.version} (sha256 {start.sha256[:12]})"
    )
    assert card.training.split_rule.endswith("the patients the starting model learned from only train")
    started, trained = (
        keras.models.load_model(folder / "model.keras", compile=False) for folder in (smoke_model, tmp_path)
    )
    np.testing.assert_allclose(
        trained.get_layer("conv1_conv").get_weights()[0],
        started.get_layer("conv1_conv").get_weights()[0],
        rtol=0,
        atol=1e-7,
    )
    labels_csv = nih_data / "images_labels.csv"
    learned = split_images(smoke_model, labels_csv)
    now = split_images(tmp_path, labels_csv)
    assert learned["train"] | learned["validation"] <= now["train"]


def test_a_refit_needs_the_thresholds_of_its_validation_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.__main__ import main

    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path)])
    assert "no data: give --labels-csv or at least one --dataset folder" in capsys.readouterr().err
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


def test_combined_folders_split_by_patient_with_thumbnails_only_in_training(
    shared_datasets: list[Path],
) -> None:
    nih, extra, thumbs = map(str, shared_datasets)
    config = tf_train.TrainConfig(out_dir="out", datasets=(nih, extra), train_only_datasets=(thumbs,))
    records = read_datasets(tf_train.sources_of(config))
    splits = tf_train.make_splits(records, config)

    assert not any(r.train_only for r in splits["validation"] + splits["test"])
    assert {r.dataset for r in splits["validation"] + splits["test"]} == {nih, extra}
    home = {r.patient_id: name for name, part in splits.items() for r in part}
    for name, part in splits.items():  # a patient with films in two folders stays in one split
        assert all(home[r.patient_id] == name for r in part)
    in_both = {r.patient_id for r in records if r.dataset == nih} & {
        r.patient_id for r in records if r.dataset == extra
    }
    assert len(in_both) == 4
    assert len({r.patient_id for r in splits["test"]}) >= 100  # enough patients for useful intervals
    placed = sum(len(part) for part in splits.values())
    held_out = {r.patient_id for r in splits["validation"] + splits["test"]}
    assert len(records) - placed == sum(r.train_only and r.patient_id in held_out for r in records)


def combined_folders(nih_data: Path, root: Path) -> tuple[Path, Path, Path]:
    """Two full-resolution folders (40 and 24 NIH films; the second holds another film of a patient
    of the first) and a train-only folder of 32 px thumbnails of 12 more films, 6 of them of
    patients of the first folder."""
    from PIL import Image

    with open(nih_data / "images_labels.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        header, rows = list(reader.fieldnames or []), list(reader)
    folders = []
    for name, chosen in (("first", rows[:40]), ("second", rows[40:64]), ("thumbs", rows[64:76])):
        folder = root / name
        (folder / "images").mkdir(parents=True)
        for i, row in enumerate(chosen):
            source = nih_data / "images" / row["Image"]
            if name == "thumbs":
                row["PatientId"] = rows[i]["PatientId"] if i < 6 else row["PatientId"]
                with Image.open(source) as film:
                    film.resize((32, 32)).save(folder / "images" / row["Image"])
            else:
                (folder / "images" / row["Image"]).symlink_to(source)
        if name == "second":
            chosen[0]["PatientId"] = rows[0]["PatientId"]
        with open(folder / "images_labels.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, header)
            writer.writeheader()
            writer.writerows(chosen)
        folders.append(folder)
    return folders[0], folders[1], folders[2]


@pytest.mark.slow
def test_an_interrupted_run_on_combined_folders_resumes_where_it_stopped(
    nih_data: Path, tmp_path: Path
) -> None:
    # In this process (TensorFlow is loaded already): two more interpreters would cost a minute.
    from training.__main__ import main as run_training
    from training.checkpoint import CheckpointError, load_state
    from training.evaluate import read_splits as read_model_splits
    from training.splits import SPLITS

    first, second, thumbs = combined_folders(nih_data, tmp_path / "data")
    out = tmp_path / "run"
    args = [
        "--dataset", str(first), "--dataset", str(second), "--train-only-dataset", str(thumbs),
        "--out", str(out), "--input-size", "32", "--batch-size", "8", "--epochs", "2", "--max-steps", "2",
        "--run-eagerly",
    ]  # fmt: skip
    assert run_training([*args, "--stop-after", "1"]) == 0  # a job slot that ends after the first epoch
    stopped = load_state(out / "checkpoints")
    assert stopped.epochs_done == 1 and not (out / "model.keras").exists()
    assert int(stopped.optimizer_variables[0]) == 2  # Adam's iteration counter: 2 steps
    assert stopped.average  # the weight average travels with the checkpoint

    assert run_training([*args, "--resume"]) == 0
    finished = load_state(out / "checkpoints")
    assert finished.epochs_done == 2
    assert int(finished.optimizer_variables[0]) == 4  # continued from 2, not restarted at 0
    with open(out / "training_log.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    from cxr.model_card import load_model_card, verify_weights

    card = load_model_card(out)
    verify_weights(card, out)
    assert card.training.recipe["epochs"] == 2 and "resume" not in card.training.recipe

    records = read_datasets(tf_train.sources_of(tf_train.TrainConfig(
        out_dir=str(out), datasets=(str(first), str(second)), train_only_datasets=(str(thumbs),)
    )))  # fmt: skip
    splits = read_model_splits(out / "splits.csv", records)  # leakage- and train-only-checked
    assert sum(len(splits[name]) for name in SPLITS) == len(records) - sum(
        r.train_only and any(r.patient_id == h.patient_id for h in splits["validation"] + splits["test"])
        for r in records
    )
    assert any(r.train_only for r in splits["train"])
    assert {r.dataset for r in splits["test"] + splits["validation"]} <= {str(first), str(second)}

    # Another recipe (here: more epochs) is refused before any training, naming the difference.
    config = tf_train.TrainConfig(
        out_dir=str(out),
        datasets=(str(first), str(second)),
        train_only_datasets=(str(thumbs),),
        input_size=32, batch_size=8, epochs=3, max_steps=2, resume=True,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="epochs 2 there, 3 here"):
        tf_train.train(config)

    # The evaluation reads the same folders and scores the full-resolution test films only.
    from training.evaluate import EvaluateConfig, evaluate

    report = evaluate(
        EvaluateConfig(
            model_dir=str(out),
            datasets=(str(first), str(second)),
            train_only_datasets=(str(thumbs),),
            bootstrap=0,
        )
    )
    assert report["metrics"]["test"]["n_images"] == len(splits["test"])
