"""The report: JSON without NaN, Markdown rendered from the JSON alone, figures as PNG files."""

import json
from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import ModelCard, Normalisation, TrainingData
from training.evaluation import split_metrics
from training.plots import plot_class_balance, plot_roc_curves
from training.reference import compare_with_reference
from training.report import REPORT_JSON, REPORT_MD, Report, build_report, render_markdown, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_card() -> ModelCard:
    return ModelCard(
        name="toy",
        version="0.0.1",
        created="2026-01-01",
        labels=list(LABELS),
        input_size=32,
        normalisation=Normalisation(mean=0.5, std=0.25),
        thresholds=dict.fromkeys(LABELS, 0.4),
        threshold_rule="Youden's J on validation",
        last_conv_layer="relu",
        weights_file="model.keras",
        sha256="0" * 64,
        training=TrainingData(
            dataset="toy", split_rule="toy rule", n_train=3, n_validation=30, n_test=30, seed=1
        ),
    )


@pytest.fixture(scope="module")
def report() -> Report:
    rng = np.random.default_rng(0)
    labels = (rng.random((30, 14)) < 0.3).astype(np.float32)
    labels[:, LABELS.index("Hernia")] = 0  # undefined AUROC must render, not crash
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random((30, 14)), 0, 1)
    images = [f"{i}.png" for i in range(30)]
    metrics = {name: split_metrics(name, labels, probabilities, 20) for name in ("validation", "test")}
    reference = {image: probabilities[i] for i, image in enumerate(images[1:], start=1)}
    comparison = compare_with_reference("test", images, labels, probabilities, reference, {"Mass": 0.83}, 20)
    balance = {
        "n_train": 3,
        "per_label": {label: dict(freq_pos=0.25, freq_neg=0.75, w_pos=0.75, w_neg=0.25) for label in LABELS},
    }
    return build_report(
        make_card(),
        "labels.csv",
        {"train": 3, "validation": 30, "test": 30},
        metrics,
        "test",
        labels,
        probabilities,
        comparison,
        balance,
        20,
        0,
        {"roc_curves": "roc_curves.png", "class_balance": "class_balance.png"},
    )


def test_report_uses_the_card_thresholds(report: Report) -> None:
    assert {point["threshold"] for point in report["operating_points"].values()} == {0.4}
    assert report["reference"]["n_common"] == 29 and report["reference"]["missing"] == ["0.png"]


def test_report_json_is_strict_json_and_markdown_renders_from_it(report: Report, tmp_path: Path) -> None:
    json_path, markdown_path = write_report(report, tmp_path)
    assert (json_path.name, markdown_path.name) == (REPORT_JSON, REPORT_MD)
    reloaded = json.loads(json_path.read_text())  # allow_nan=False when writing: no NaN slipped in
    assert render_markdown(reloaded) == markdown_path.read_text()


def test_markdown_has_the_tables_and_embeds_the_figures(report: Report) -> None:
    markdown = render_markdown(report)
    for heading in (
        "## AUROC",
        "## Compared with the reference",
        "## Operating points (test)",
        "### Any finding",
        "## Threshold sweep (test)",
        "## Class balance",
    ):
        assert heading in markdown
    assert "![ROC curves](roc_curves.png)" in markdown
    assert "(class_balance.png)" in markdown
    assert "the 29 of 30 that have a reference prediction (without one: 0.png)" in markdown
    hernia_row = next(line for line in markdown.splitlines() if line.startswith("| Hernia | n/a"))
    assert "n/a" in hernia_row
    mass_row = next(line for line in markdown.splitlines() if line.startswith("| Mass |"))
    assert "[" in mass_row and "]" in mass_row  # the interval is shown


def test_markdown_without_reference_or_training_split(report: Report) -> None:
    bare = dict(report, reference=None, class_balance=None)
    markdown = render_markdown(bare)
    assert "## Compared with the reference" not in markdown
    assert "## Class balance" not in markdown


def test_figures_are_png_files(tmp_path: Path, report: Report) -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random((20, 14)) < 0.3).astype(np.float32)
    labels[:, 0] = 0  # one panel with one class only
    probabilities = rng.random((20, 14))
    roc = plot_roc_curves(tmp_path / "roc.png", labels, probabilities, "toy", (labels, probabilities[::-1]))
    balance = plot_class_balance(tmp_path / "balance.png", report["class_balance"]["per_label"], "toy")
    for path in (roc, balance):
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000
