"""The evaluation report: one JSON-ready dict, written as report.json and rendered as report.md.

The Markdown is rendered from the dict alone, so report.md can always be rebuilt from report.json.
"""

import datetime
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import ModelCard, SplitMetrics
from training.operating_point import any_finding, operating_points, threshold_sweep
from training.reference import ReferenceComparison

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
MISSING = "n/a"  # shown for an undefined value (a label with one class only, no predicted positives, ...)

Report = dict[str, Any]


def build_report(
    card: ModelCard,
    labels_csv: str,
    n_images: Mapping[str, int],
    metrics: Mapping[str, SplitMetrics],
    split: str,
    labels: np.ndarray,
    probabilities: np.ndarray,
    comparison: ReferenceComparison | None,
    class_balance: Mapping[str, Any] | None,
    bootstrap_rounds: int,
    seed: int,
    figures: Mapping[str, str | None],
) -> Report:
    """Everything the report says; `labels` and `probabilities` are those of `split`, judged at the
    card's thresholds (never re-chosen here)."""
    return {
        "date": datetime.date.today().isoformat(),
        "model": {
            "name": card.name,
            "version": card.version,
            "weights_file": card.weights_file,
            "sha256": card.sha256,
            "input_size": card.input_size,
            "threshold_rule": card.threshold_rule,
            "split_rule": card.training.split_rule,
        },
        "data": {"labels_csv": labels_csv, "n_images": dict(n_images)},
        "bootstrap_rounds": bootstrap_rounds,
        "seed": seed,
        "metrics": {name: entry.model_dump(mode="json") for name, entry in metrics.items()},
        "operating_split": split,
        "operating_points": operating_points(labels, probabilities, card.thresholds),
        "any_finding": any_finding(labels, probabilities, card.thresholds),
        "threshold_sweep": threshold_sweep(labels, probabilities),
        "class_balance": dict(class_balance) if class_balance is not None else None,
        "reference": _comparison(comparison) if comparison is not None else None,
        "figures": dict(figures),
    }


def _comparison(comparison: ReferenceComparison) -> dict[str, Any]:
    return {
        "split": comparison.split,
        "n_split": comparison.n_split,
        "n_common": comparison.n_common,
        "missing": comparison.missing,
        "ours": comparison.ours.model_dump(mode="json"),
        "reference": comparison.reference.model_dump(mode="json"),
        "published": comparison.published,
    }


def _number(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _with_interval(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return MISSING
    if low is None or high is None:
        return _number(value)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _label_auroc(metrics: Mapping[str, Any], label: str) -> str:
    entry = metrics["per_label"][label]
    return _with_interval(entry["auroc"], entry["ci_low"], entry["ci_high"])


def _mean_auroc(metrics: Mapping[str, Any]) -> str:
    return _with_interval(metrics["mean_auroc"], metrics["mean_auroc_ci_low"], metrics["mean_auroc_ci_high"])


def _auroc_section(report: Report) -> list[str]:
    splits = list(report["metrics"])
    header = ["Label"]
    for split in splits:
        header += [f"{split} AUROC (95% CI)", "n+"]
    rows = []
    for label in LABELS:
        row = [label]
        for split in splits:
            metrics = report["metrics"][split]
            row += [_label_auroc(metrics, label), str(metrics["per_label"][label]["n_positive"])]
        rows.append(row)
    mean_row = ["**mean**"]
    for split in splits:
        mean_row += [
            f"**{_mean_auroc(report['metrics'][split])}**",
            f"n = {report['metrics'][split]['n_images']}",
        ]
    rows.append(mean_row)
    return [
        "## AUROC",
        "",
        f"95% intervals: 2.5th and 97.5th percentiles of {report['bootstrap_rounds']} bootstrap resamples "
        "of the images. The mean is over the labels that have both classes in the split.",
        "",
        *_table(header, rows),
    ]


def _reference_section(report: Report) -> list[str]:
    reference = report["reference"]
    if reference is None:
        return []
    lines = [
        "## Compared with the reference CheXNet reproduction",
        "",
        f"Both models on the same {reference['split']} images: the {reference['n_common']} of "
        f"{reference['n_split']} that have a reference prediction"
        + (f" (without one: {', '.join(reference['missing'])})." if reference["missing"] else "."),
        "The last column is the reference's own AUROC on the official NIH test set, for scale.",
        "",
    ]
    header = ["Label", "ours (95% CI)", "reference (95% CI)", "reference, official test set"]
    rows = [
        [
            label,
            _label_auroc(reference["ours"], label),
            _label_auroc(reference["reference"], label),
            _number(reference["published"].get(label)),
        ]
        for label in LABELS
    ]
    published = [reference["published"][label] for label in LABELS if label in reference["published"]]
    rows.append(
        [
            "**mean**",
            _mean_auroc(reference["ours"]),
            _mean_auroc(reference["reference"]),
            _number(sum(published) / len(published) if published else None),
        ]
    )
    lines += _table(header, rows)
    lines += [
        "Caveats: the reference was trained on the official training list, which may include some of these "
        "images; where this model was distilled from the reference's probabilities (see the card's recipe), "
        "that was on its training split only.",
        "",
    ]
    return lines


def _operating_section(report: Report) -> list[str]:
    split = report["operating_split"]
    rows = []
    for label in LABELS:
        point = report["operating_points"][label]
        rows.append(
            [
                label,
                _number(point["threshold"]),
                *(str(point[key]) for key in ("tp", "fp", "fn", "tn")),
                *(_number(point[key]) for key in ("ppv", "sensitivity", "specificity", "f1", "accuracy")),
            ]
        )
    header = [
        "Label",
        "threshold",
        "TP",
        "FP",
        "FN",
        "TN",
        "precision",
        "recall",
        "specificity",
        "F1",
        "accuracy",
    ]
    flag = report["any_finding"]
    return [
        f"## Operating points ({split})",
        "",
        f"Thresholds from the model card ({report['model']['threshold_rule']}); they are not re-chosen here. "
        "A finding is p ≥ threshold.",
        "",
        *_table(header, rows),
        "### Any finding",
        "",
        f'Flag = some label at or above its threshold; truth = not "No Finding" '
        f"({flag['n_abnormal']} of {flag['n_images']} {split} images).",
        "",
        *_table(
            ["TP", "FP", "FN", "TN", "sensitivity", "specificity", "PPV", "NPV", "accuracy"],
            [
                [
                    *(str(flag[key]) for key in ("tp", "fp", "fn", "tn")),
                    *(_number(flag[key]) for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy")),
                ]
            ],
        ),
    ]


def _sweep_section(report: Report) -> list[str]:
    sweep = report["threshold_sweep"]
    thresholds = [entry["threshold"] for entry in sweep[LABELS[0]]]
    rows = [
        [label]
        + [
            f"{_number(e['sensitivity'], 2)} / {_number(e['specificity'], 2)} / {_number(e['ppv'], 2)}"
            for e in sweep[label]
        ]
        for label in LABELS
    ]
    return [
        f"## Threshold sweep ({report['operating_split']})",
        "",
        "Each cell: sensitivity / specificity / PPV at that threshold.",
        "",
        *_table(["Label", *(f"{t:.1f}" for t in thresholds)], rows),
    ]


def _balance_section(report: Report) -> list[str]:
    balance = report["class_balance"]
    if balance is None:
        return []
    rows = [
        [
            label,
            *(
                _number(balance["per_label"][label][key])
                for key in ("freq_pos", "freq_neg", "w_pos", "w_neg")
            ),
        ]
        for label in LABELS
    ]
    return [
        "## Class balance of the training split",
        "",
        f"{balance['n_train']} training images. The loss weights are w_pos = freq_neg and "
        "w_neg = freq_pos, so w_pos * freq_pos = w_neg * freq_neg: each label's positives and negatives "
        "weigh the same.",
        "",
        f"![class balance before and after weighting]({report['figures']['class_balance']})",
        "",
        *_table(["Label", "freq_pos", "freq_neg", "w_pos", "w_neg"], rows),
    ]


def render_markdown(report: Report) -> str:
    model = report["model"]
    lines = [
        f"# Evaluation of {model['name']} {model['version']}",
        "",
        f"- weights: `{model['weights_file']}` (sha256 `{model['sha256']}`), input {model['input_size']} px",
        f"- labels: `{report['data']['labels_csv']}`; splits: {model['split_rule']}",
        "- images: " + ", ".join(f"{split} {n}" for split, n in report["data"]["n_images"].items()),
        f"- evaluated {report['date']}",
        "",
        *_auroc_section(report),
        *_reference_section(report),
        f"## ROC curves ({report['operating_split']})",
        "",
        f"![ROC curves]({report['figures']['roc_curves']})",
        "",
        *_operating_section(report),
        *_sweep_section(report),
        *_balance_section(report),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """report.json and report.md in `out_dir`."""
    json_path, markdown_path = out_dir / REPORT_JSON, out_dir / REPORT_MD
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    markdown_path.write_text(render_markdown(report))
    return json_path, markdown_path
