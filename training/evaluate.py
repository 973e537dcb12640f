"""`python -m training.evaluate`: score a trained model on its validation and test images.

Reads the model folder (model.keras checked against model_card.json, splits.csv), predicts through
the shared preprocessing, and writes report.md, report.json and figures; the card gets the
validation and test metrics. Operating thresholds are the card's (chosen on validation during
training): this step never chooses them on test. `--choose-thresholds` chooses them again on the
validation split by the current rule and `--thresholds-from` adopts a validation run's (for a
refit); either changes the findings the service returns, so it needs a new `--version`.
"""

import argparse
import csv
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxr.labels import LABELS
from cxr.model_card import ModelCard, load_model_card, save_model_card, verify_weights
from training.data import Record, data_sources, labels_matrix, read_datasets, read_teachers
from training.evaluation import inherited_thresholds, split_metrics, thresholds_for
from training.import_weights import UNEVALUATED_THRESHOLD_RULE
from training.loss import class_weights
from training.plots import plot_class_balance, plot_roc_curves
from training.reference import compare_with_reference, read_published_aurocs
from training.report import Report, build_report, write_report
from training.splits import SPLITS, check_no_leakage

log = logging.getLogger(__name__)
SPLITS_FILE = "splits.csv"
ROC_FIGURE = "roc_curves.png"
BALANCE_FIGURE = "class_balance.png"
SCORED_SPLITS = ("validation", "test")
IMPORTED_NOTE = "(chosen by training.evaluate: the weights were imported)"


class SplitsFileError(ValueError):
    """splits.csv is missing, malformed, or names images the label table does not have."""


@dataclass
class EvaluateConfig:
    model_dir: str
    labels_csv: str | None = None
    images_dir: str | None = None
    datasets: tuple[str, ...] = ()  # dataset folders, as the training run combined them
    train_only_datasets: tuple[str, ...] = ()
    reference_csvs: tuple[str, ...] = ()  # one per dataset folder, say
    reference_aucs: str | None = None
    out_dir: str | None = None  # default: the model folder
    bootstrap: int = 1000
    split: str = "test"  # the split of the operating-point tables, sweep, ROC figure and comparison
    seed: int = 0
    batch_size: int = 32
    choose_thresholds: bool = False  # again, on validation, by the current rule
    thresholds_from: str | None = None  # a validation run's model folder, for a refit
    version: str | None = None  # the card's new version (required with new thresholds)

    def __post_init__(self) -> None:
        if not self.labels_csv and not self.datasets:
            raise ValueError("no data: give --labels-csv or the run's --dataset folders")
        if self.choose_thresholds and self.thresholds_from:
            raise ValueError("--choose-thresholds and --thresholds-from are two different sources: pick one")
        if (self.choose_thresholds or self.thresholds_from) and not self.version:
            raise ValueError("new thresholds change the service's findings: give the card a new --version")


@dataclass(frozen=True)
class ScoredSplit:
    name: str
    images: list[str]
    labels: np.ndarray  # (n, 14)
    probabilities: np.ndarray  # (n, 14)


def read_splits(path: Path, records: Sequence[Record]) -> dict[str, list[Record]]:
    """The records of each split named in splits.csv (Image, PatientId, split), leakage-checked."""
    if not path.is_file():
        raise SplitsFileError(f"{path}: not found (the training run writes it beside model.keras)")
    by_image = {record.image: record for record in records}
    splits: dict[str, list[Record]] = {name: [] for name in SPLITS}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"Image", "PatientId", "split"} <= set(reader.fieldnames):
            raise SplitsFileError(f"{path}: expected the columns Image, PatientId, split")
        for line, row in enumerate(reader, start=2):
            image, split = row["Image"], row["split"]
            if split not in splits:
                raise SplitsFileError(
                    f"{path}, row {line}: unknown split {split!r} (expected one of {SPLITS})"
                )
            if image not in by_image:
                raise SplitsFileError(f"{path}, row {line}: image {image} is not in the label table")
            record = by_image[image]
            if record.patient_id != row["PatientId"]:
                raise SplitsFileError(
                    f"{path}, row {line}: {image} belongs to patient {record.patient_id} in the label table, "
                    f"not {row['PatientId']}"
                )
            splits[split].append(record)
    check_no_leakage(splits)
    return splits


def class_balance(train_labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per label: positive/negative frequencies of the training split and the loss weights from them."""
    w_pos, w_neg = class_weights(train_labels)
    freq_pos = train_labels.mean(axis=0)
    return {
        label: {
            "freq_pos": float(freq_pos[j]),
            "freq_neg": float(1.0 - freq_pos[j]),
            "w_pos": float(w_pos[j]),
            "w_neg": float(w_neg[j]),
        }
        for j, label in enumerate(LABELS)
    }


def predict(
    model_dir: Path, card: ModelCard, splits: dict[str, list[Record]], batch_size: int
) -> dict[str, ScoredSplit]:
    """Probabilities for the records of each given split, through the training input path."""
    import keras  # TensorFlow loads only once the inputs are known to be good

    from training.dataset import load_images, model_inputs

    model = keras.models.load_model(verify_weights(card, model_dir), compile=False)
    scored = {}
    for name, records in splits.items():
        inputs = model_inputs(load_images(records, card.input_size), card.normalisation)
        # Eager calls, not model.predict: tracing the predict graph costs more than a few hundred
        # images take to score, and it was traced again for the second split.
        probabilities = np.concatenate(
            [
                keras.ops.convert_to_numpy(model(inputs[start : start + batch_size], training=False))
                for start in range(0, len(inputs), batch_size)
            ]
        )
        scored[name] = ScoredSplit(
            name, [r.image for r in records], labels_matrix(records), probabilities.astype(np.float64)
        )
        log.info("%s: %d images predicted", name, len(records))
    return scored


def evaluate(config: EvaluateConfig) -> Report:
    model_dir = Path(config.model_dir)
    out_dir = Path(config.out_dir or model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    card = load_model_card(model_dir)
    verify_weights(card, model_dir)  # fail before the slow part
    records = read_datasets(
        data_sources(config.labels_csv, config.images_dir, config.datasets, config.train_only_datasets)
    )
    splits = read_splits(model_dir / SPLITS_FILE, records)
    placeholders = card.threshold_rule == UNEVALUATED_THRESHOLD_RULE
    adopted = inherited_thresholds(config.thresholds_from) if config.thresholds_from else None  # fail fast
    choose = (placeholders or config.choose_thresholds) and adopted is None
    # A refit's validation images are training images: its splits.csv has no validation rows.
    needed = {config.split} | ({"validation"} if choose else set())
    for name in sorted(needed):
        if not splits[name]:
            raise SplitsFileError(f"{model_dir / SPLITS_FILE}: the {name} split is empty")
    scored = predict(
        model_dir, card, {name: splits[name] for name in SCORED_SPLITS if splits[name]}, config.batch_size
    )
    update: dict[str, object] = {"version": config.version} if config.version else {}
    if choose:
        validation = scored["validation"]
        thresholds, rule = thresholds_for(validation.labels, validation.probabilities)
        update |= {
            "thresholds": thresholds,
            "threshold_rule": f"{rule} {IMPORTED_NOTE}" if placeholders else rule,
        }
        log.info("thresholds chosen on the validation split: %s", rule)
    elif adopted is not None:
        update |= {"thresholds": adopted[0], "threshold_rule": adopted[1]}
    card = card.model_copy(update=update)

    metrics = {
        name: split_metrics(name, s.labels, s.probabilities, config.bootstrap, config.seed)
        for name, s in scored.items()
    }
    focus = scored[config.split]
    comparison, reference_curves = None, None
    if config.reference_csvs:
        reference = read_teachers(config.reference_csvs)
        published = read_published_aurocs(config.reference_aucs) if config.reference_aucs else {}
        comparison = compare_with_reference(
            focus.name,
            focus.images,
            focus.labels,
            focus.probabilities,
            reference,
            published,
            config.bootstrap,
            config.seed,
        )
        common = [i for i, image in enumerate(focus.images) if image in reference]
        reference_curves = (focus.labels[common], np.stack([reference[focus.images[i]] for i in common]))
    plot_roc_curves(
        out_dir / ROC_FIGURE,
        focus.labels,
        focus.probabilities,
        f"{card.name} {card.version}: ROC curves on the {focus.name} split (n = {len(focus.images)})",
        reference_curves,
    )
    balance = None
    if splits["train"]:
        per_label = class_balance(labels_matrix(splits["train"]))
        balance = {"n_train": len(splits["train"]), "per_label": per_label}
        plot_class_balance(
            out_dir / BALANCE_FIGURE,
            per_label,
            f"Training split (n = {len(splits['train'])}): positive vs negative share per label",
        )

    report = build_report(
        card,
        ", ".join(filter(None, (config.labels_csv, *config.datasets, *config.train_only_datasets))),
        {name: len(part) for name, part in splits.items()},
        metrics,
        focus.name,
        focus.labels,
        focus.probabilities,
        comparison,
        balance,
        config.bootstrap,
        config.seed,
        {"roc_curves": ROC_FIGURE, "class_balance": BALANCE_FIGURE if balance else None},
    )
    write_report(report, out_dir)

    kept = [entry for entry in card.metrics if entry.split not in metrics]
    save_model_card(card.model_copy(update={"metrics": [*kept, *metrics.values()]}), model_dir)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-dir", required=True, help="model.keras, model_card.json, splits.csv")
    parser.add_argument("--labels-csv", help="the label table the model was trained from")
    parser.add_argument(
        "--dataset", action="append", default=[], metavar="FOLDER", help="a dataset folder the run trained on"
    )
    parser.add_argument(
        "--train-only-dataset",
        action="append",
        default=[],
        metavar="FOLDER",
        help="a train-only folder of the run (its films must not be in validation or test)",
    )
    parser.add_argument("--images-dir", help="image folder (default: beside the CSV, incl. images_*/images/)")
    parser.add_argument(
        "--reference-csv",
        action="append",
        default=[],
        help="reference probabilities (Image Index, prob_<label>); repeat for several tables",
    )
    parser.add_argument("--reference-aucs", help="the reference's published AUROC per label (label,auc)")
    parser.add_argument(
        "--out", help="folder for report.md, report.json and figures (default: the model folder)"
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=EvaluateConfig.bootstrap,
        help="bootstrap resamples for the 95%% intervals (0: none)",
    )
    parser.add_argument(
        "--split",
        choices=SCORED_SPLITS,
        default=EvaluateConfig.split,
        help="split of the operating points, sweep, ROC curves and reference comparison",
    )
    parser.add_argument("--seed", type=int, default=EvaluateConfig.seed, help="bootstrap seed")
    parser.add_argument(
        "--choose-thresholds",
        action="store_true",
        help="choose the operating thresholds again on the validation split, by the current rule",
    )
    parser.add_argument(
        "--thresholds-from", help="adopt the thresholds of this validation run's model folder (for a refit)"
    )
    parser.add_argument("--version", help="the card's new version (needed with new thresholds)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.reference_aucs and not args.reference_csv:
        build_parser().error("--reference-aucs needs --reference-csv (the comparison is on the same images)")
    try:
        config = EvaluateConfig(
            model_dir=args.model_dir,
            labels_csv=args.labels_csv,
            images_dir=args.images_dir,
            datasets=tuple(args.dataset),
            train_only_datasets=tuple(args.train_only_dataset),
            reference_csvs=tuple(args.reference_csv),
            reference_aucs=args.reference_aucs,
            out_dir=args.out,
            bootstrap=args.bootstrap,
            split=args.split,
            seed=args.seed,
            choose_thresholds=args.choose_thresholds,
            thresholds_from=args.thresholds_from,
            version=args.version,
        )
    except ValueError as error:
        build_parser().error(str(error))
    report = evaluate(config)
    out_dir = Path(config.out_dir or config.model_dir)
    for name, metrics in report["metrics"].items():
        mean = metrics["mean_auroc"]
        print(
            f"{name}: mean AUROC {'n/a' if mean is None else f'{mean:.3f}'} on {metrics['n_images']} images"
        )
    print(f"report: {out_dir / 'report.md'}; card updated: {Path(config.model_dir) / 'model_card.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
