"""`python -m training.evaluate`: splits.csv handling, and a run on the session's smoke model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import load_model_card, save_model_card, verify_weights
from training.data import read_label_table
from training.evaluate import SplitsFileError, class_balance, main, read_splits
from training.import_weights import UNEVALUATED_THRESHOLD_RULE
from training.splits import PatientLeakageError, fold_validation_into_train

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORDS = read_label_table(FIXTURES / "labels_onehot.csv")
GOOD_SPLITS = "Image,PatientId,split\n00000001_000.png,1,train\n00000002_000.png,2,validation\n"


def write_splits(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "splits.csv"
    path.write_text(text)
    return path


def test_read_splits_returns_the_records_of_each_split(tmp_path: Path) -> None:
    splits = read_splits(write_splits(tmp_path, GOOD_SPLITS + "00000404_000.png,404,test\n"), RECORDS)
    assert {name: [r.image for r in part] for name, part in splits.items()} == {
        "train": ["00000001_000.png"],
        "validation": ["00000002_000.png"],
        "test": ["00000404_000.png"],
    }


@pytest.mark.parametrize(
    ("rows", "error", "message"),
    [
        ("unknown.png,9,test\n", SplitsFileError, "row 4: image unknown.png is not in the label table"),
        ("00000404_000.png,404,holdout\n", SplitsFileError, "row 4: unknown split 'holdout'"),
        ("00000404_000.png,405,test\n", SplitsFileError, "row 4: 00000404_000.png belongs to patient 404"),
        ("00000001_000.png,1,test\n", PatientLeakageError, "patient 1 is in both train and test"),
    ],
)
def test_bad_splits_files_are_refused(
    tmp_path: Path, rows: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        read_splits(write_splits(tmp_path, GOOD_SPLITS + rows), RECORDS)


def test_a_missing_or_headerless_splits_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SplitsFileError, match="not found"):
        read_splits(tmp_path / "splits.csv", RECORDS)
    with pytest.raises(SplitsFileError, match="expected the columns Image, PatientId, split"):
        read_splits(write_splits(tmp_path, "Image,split\na.png,test\n"), RECORDS)


def test_class_balance_weights_equalise_positive_and_negative_shares() -> None:
    labels = (np.random.default_rng(0).random((40, 14)) < 0.2).astype(np.float32)
    for entry in class_balance(labels).values():
        assert entry["freq_pos"] + entry["freq_neg"] == pytest.approx(1.0)
        assert entry["w_pos"] * entry["freq_pos"] == pytest.approx(
            entry["w_neg"] * entry["freq_neg"], abs=1e-6
        )


@pytest.mark.slow
def test_evaluate_writes_the_report_and_updates_the_card(
    smoke_copy: Path, nih_data: Path, tmp_path: Path
) -> None:
    card_before = load_model_card(smoke_copy)
    out = tmp_path / "report"
    reference = nih_data / "reference"
    exit_code = main(
        [
            "--model-dir", str(smoke_copy),
            "--labels-csv", str(nih_data / "images_labels.csv"),
            "--reference-csv", str(reference / "reproduce_chexnet_preds_for_images.csv"),
            "--reference-aucs", str(reference / "reproduce_chexnet_aucs.csv"),
            "--bootstrap", "20",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert exit_code == 0

    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    for figure in report["figures"].values():
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC
        assert f"]({figure})" in markdown  # embedded by relative path
    n_test = report["data"]["n_images"]["test"]
    assert report["metrics"]["test"]["n_images"] == n_test > 0
    assert report["reference"]["n_common"] + len(report["reference"]["missing"]) == n_test
    assert set(report["reference"]["published"]) == set(LABELS)
    assert report["operating_split"] == "test"
    assert {p["threshold"] for p in report["operating_points"].values()} <= set(
        card_before.thresholds.values()
    )

    card = load_model_card(smoke_copy)
    verify_weights(card, smoke_copy)  # the weights are untouched
    assert card.thresholds == card_before.thresholds  # thresholds are never re-chosen on test
    assert card.threshold_rule == card_before.threshold_rule
    assert [m.split for m in card.metrics] == ["validation", "test"]
    test_metrics = card.metrics_for("test")
    assert test_metrics is not None and test_metrics.n_images == n_test
    assert test_metrics.mean_auroc_ci_low is not None  # bootstrap intervals were computed


def refit_layout(model_dir: Path, labels_csv: Path) -> None:
    """Rewrite splits.csv the way a refit writes it: validation folded into train."""
    from training.train import write_splits as write_splits_file

    path = model_dir / "splits.csv"
    write_splits_file(fold_validation_into_train(read_splits(path, read_label_table(labels_csv))), path)


@pytest.mark.slow
def test_evaluate_scores_a_refit_on_its_test_split_only(
    smoke_copy: Path, nih_data: Path, tmp_path: Path
) -> None:
    refit_layout(smoke_copy, nih_data / "images_labels.csv")
    card = load_model_card(smoke_copy)
    save_model_card(card.model_copy(update={"metrics": []}), smoke_copy)  # as a refit's card has
    labels_csv = str(nih_data / "images_labels.csv")
    assert (
        main(
            [
                "--model-dir",
                str(smoke_copy),
                "--labels-csv",
                labels_csv,
                "--bootstrap",
                "0",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["metrics"]) == ["test"] and report["data"]["n_images"]["validation"] == 0
    assert [m.split for m in load_model_card(smoke_copy).metrics] == ["test"]
    with pytest.raises(SplitsFileError, match="the validation split is empty"):
        main(["--model-dir", str(smoke_copy), "--labels-csv", labels_csv, "--split", "validation"])


@pytest.mark.slow
def test_placeholder_thresholds_need_a_validation_split(smoke_copy: Path, nih_data: Path) -> None:
    refit_layout(smoke_copy, nih_data / "images_labels.csv")
    card = load_model_card(smoke_copy)
    save_model_card(card.model_copy(update={"threshold_rule": UNEVALUATED_THRESHOLD_RULE}), smoke_copy)
    with pytest.raises(SplitsFileError, match="the validation split is empty"):
        main(["--model-dir", str(smoke_copy), "--labels-csv", str(nih_data / "images_labels.csv")])


@pytest.mark.slow
def test_evaluate_refuses_weights_that_do_not_match_the_card(smoke_copy: Path, nih_data: Path) -> None:
    from cxr.model_card import ModelCardMismatchError

    weights = smoke_copy / "model.keras"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ModelCardMismatchError, match="sha256"):
        main(["--model-dir", str(smoke_copy), "--labels-csv", str(nih_data / "images_labels.csv")])


@pytest.mark.slow
def test_thresholds_can_be_chosen_again_on_validation_under_a_new_version(
    smoke_copy: Path, nih_data: Path
) -> None:
    from training.evaluate import predict
    from training.evaluation import thresholds_for

    labels_csv = nih_data / "images_labels.csv"
    card_before = load_model_card(smoke_copy)
    args = ["--model-dir", str(smoke_copy), "--labels-csv", str(labels_csv), "--bootstrap", "0"]
    assert main([*args, "--choose-thresholds", "--version", "9.9.9"]) == 0
    card = load_model_card(smoke_copy)
    validation = read_splits(smoke_copy / "splits.csv", read_label_table(labels_csv))["validation"]
    scored = predict(smoke_copy, card, {"validation": validation}, 32)["validation"]
    assert (card.thresholds, card.threshold_rule) == thresholds_for(scored.labels, scored.probabilities)
    assert card.version == "9.9.9" and card.sha256 == card_before.sha256


@pytest.mark.slow
def test_a_refit_can_adopt_a_validation_runs_thresholds_under_a_new_version(
    smoke_copy: Path, nih_data: Path, tmp_path: Path
) -> None:
    refit_layout(smoke_copy, nih_data / "images_labels.csv")
    source = tmp_path / "validation-run"
    source.mkdir()
    card = load_model_card(smoke_copy)
    save_model_card(card.model_copy(update={"thresholds": dict.fromkeys(LABELS, 0.25)}), source)
    labels_csv = str(nih_data / "images_labels.csv")
    args = ["--model-dir", str(smoke_copy), "--labels-csv", labels_csv, "--bootstrap", "0"]
    assert main([*args, "--thresholds-from", str(source), "--version", "9.9.10"]) == 0
    adopted = load_model_card(smoke_copy)
    assert adopted.thresholds == dict.fromkeys(LABELS, 0.25) and adopted.version == "9.9.10"
    assert adopted.threshold_rule.startswith(f"from {card.name} {card.version}, this recipe's validation run")
    report = json.loads((smoke_copy / "report.json").read_text())
    assert {point["threshold"] for point in report["operating_points"].values()} == {0.25}


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["--choose-thresholds"], "give the card a new --version"),
        (["--thresholds-from", "run"], "give the card a new --version"),
        (["--choose-thresholds", "--thresholds-from", "run", "--version", "2"], "two different sources"),
    ],
)
def test_new_thresholds_without_a_version_or_from_two_sources_are_usage_errors(
    extra: list[str], reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--model-dir", str(tmp_path), "--labels-csv", "x.csv", *extra])
    assert reason in capsys.readouterr().err


def test_reference_aucs_without_reference_predictions_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--model-dir", str(tmp_path), "--labels-csv", "x.csv", "--reference-aucs", "aucs.csv"])
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_evaluation_without_data_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--model-dir", str(tmp_path)])
    assert "no data: give --labels-csv or the run's --dataset folders" in capsys.readouterr().err
