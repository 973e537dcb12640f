"""`python -m training.soup`: one model from the mean of several runs' weights (a uniform soup).

Runs fine-tuned from the same starting weights with different training seeds stay close enough in
weight space that the mean of their weights scores about as their ensemble does, at one model's
inference cost (Wortsman et al., 2022, "Model soups"). Whether it does here is measured, not
assumed: each ingredient and the soup are scored on the validation split they share, and the
soup's thresholds are chosen there. The test split is not scored: `python -m training.evaluate`
scores the model that ships, once.
"""

import argparse
import datetime
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cxr.model_card import ModelCard, load_model_card, save_model_card, sha256_file, verify_weights
from training.data import data_sources, read_datasets
from training.evaluate import SPLITS_FILE, ScoredSplit, predict, read_splits
from training.evaluation import split_metrics, thresholds_for
from training.metrics import mean_auroc

log = logging.getLogger(__name__)
REPORT_FILE = "soup.json"


class SoupError(ValueError):
    """Ingredients that cannot be averaged into one model (different inputs, data or split)."""


def average_weights(ingredients: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The element-wise mean of each weight tensor over the ingredients (same layout in each)."""
    if not ingredients:
        raise SoupError("no ingredients")
    shapes = [[w.shape for w in weights] for weights in ingredients]
    if any(layout != shapes[0] for layout in shapes[1:]):
        raise SoupError("the ingredients' weight tensors differ in number or shape")
    return [
        np.mean(np.stack(tensors), axis=0, dtype=np.float64).astype(tensors[0].dtype)
        for tensors in zip(*ingredients, strict=True)
    ]


def check_compatible(cards: dict[Path, ModelCard]) -> None:
    """Same input size, normalisation and split file: one preprocessing path and one held-out set."""
    first_dir, first = next(iter(cards.items()))
    splits = (first_dir / SPLITS_FILE).read_text()
    for folder, card in cards.items():
        if card.input_size != first.input_size or card.normalisation != first.normalisation:
            raise SoupError(
                f"{folder} has input size {card.input_size} and normalisation {card.normalisation}, "
                f"{first_dir} {first.input_size} and {first.normalisation}: not one model's input"
            )
        if (folder / SPLITS_FILE).read_text() != splits:
            raise SoupError(f"{folder / SPLITS_FILE} differs from {first_dir / SPLITS_FILE}: not one split")


def make_soup(
    model_dirs: Sequence[str | Path], out_dir: str | Path, datasets: Sequence[str], version: str
) -> dict[str, object]:
    """Write the soup's model folder; returns the validation mean AUROC of each ingredient and the soup."""
    import keras

    from training.model import build_model

    folders = [Path(folder) for folder in model_dirs]
    if len(set(folders)) < 2:
        raise SoupError("a soup needs at least two different model folders")
    out = Path(out_dir)
    if out in folders:
        raise SoupError(f"{out} is an ingredient: write the soup elsewhere")
    cards = {folder: load_model_card(folder) for folder in folders}
    check_compatible(cards)
    first = cards[folders[0]]
    records = read_datasets(data_sources(None, None, tuple(datasets), ()))
    validation = read_splits(folders[0] / SPLITS_FILE, records)["validation"]
    if not validation:
        raise SoupError(f"{folders[0] / SPLITS_FILE} has no validation split to judge the soup on")

    weights = [
        keras.models.load_model(verify_weights(card, folder), compile=False).get_weights()
        for folder, card in cards.items()
    ]
    out.mkdir(parents=True, exist_ok=True)
    soup = build_model(first.input_size)
    soup.set_weights(average_weights(weights))
    soup.save(out / first.weights_file)
    shutil.copyfile(folders[0] / SPLITS_FILE, out / SPLITS_FILE)
    # Placeholder thresholds until the soup is scored; the card must exist for predict().
    save_model_card(first.model_copy(update={"sha256": sha256_file(out / first.weights_file)}), out)

    def validation_of(folder: Path) -> ScoredSplit:
        return predict(folder, load_model_card(folder), {"validation": validation}, batch_size=16)[
            "validation"
        ]

    scores: dict[str, float | None] = {}
    for folder in [*folders, out]:
        mine = validation_of(folder)  # the soup's own scoring after the last pass
        scores[str(folder)] = mean_auroc(mine.labels, mine.probabilities)
        log.info("%s: validation mean AUROC %.4f", folder, scores[str(folder)] or float("nan"))
    thresholds, rule = thresholds_for(mine.labels, mine.probabilities)
    recipe = dict(first.training.recipe)
    recipe["soup_of"] = ", ".join(f"{cards[f].name} {cards[f].version} ({f.name})" for f in folders)
    for key in ("best_epoch", "best_validation_mean_auroc", "train_seed"):
        recipe.pop(key, None)  # an ingredient's, not the soup's
    card = first.model_copy(
        update={
            "version": version,
            "created": datetime.date.today().isoformat(),
            "sha256": sha256_file(out / first.weights_file),
            "thresholds": thresholds,
            "threshold_rule": rule,
            "training": first.training.model_copy(update={"recipe": recipe}),
            "metrics": [split_metrics("validation", mine.labels, mine.probabilities, bootstrap_rounds=0)],
        }
    )
    save_model_card(card, out)
    # The soup was not trained: a training log left in its folder would be an earlier model's.
    (out / "training_log.csv").unlink(missing_ok=True)
    report = {
        "validation_images": len(validation),
        "validation_mean_auroc": scores,
        "best_epoch": {str(f): cards[f].training.recipe.get("best_epoch") for f in folders},
    }
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.soup", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model-dir", action="append", required=True, help="an ingredient's model folder (repeat)"
    )
    parser.add_argument("--out", required=True, help="the soup's model folder")
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="FOLDER", help="as the ingredients trained"
    )
    parser.add_argument("--version", required=True, help="the soup's model version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        report = make_soup(args.model_dir, args.out, args.dataset, args.version)
    except SoupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
