"""`python -m training.compare`: a model against an earlier one on the films neither learned from.

Both models score the held-out split of the first (each through its own card's input size and
normalisation); films of patients the baseline trained or chose its epoch on are left out, so the
comparison is fair to both. The difference of mean AUROC comes with a paired bootstrap interval.
"""

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cxr.model_card import load_model_card
from training.data import data_sources, read_datasets
from training.evaluate import SPLITS_FILE, predict, read_splits
from training.metrics import mean_auroc, paired_bootstrap_difference
from training.train import ancestor_patients

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Comparison:
    model: str
    baseline: str
    split: str
    n_images: int  # scored: the split's films of patients the baseline never learned from
    n_left_out: int
    mean_auroc: float
    baseline_mean_auroc: float
    difference: float
    difference_ci: tuple[float, float]
    share_not_better: float  # bootstrap resamples where the difference is <= 0


def compare(
    model_dir: str, baseline_dir: str, datasets: tuple[str, ...], split: str, rounds: int, seed: int
) -> Comparison:
    records = read_datasets(data_sources(None, None, datasets, ()))
    held_out = read_splits(Path(model_dir) / SPLITS_FILE, records)[split]
    learned = ancestor_patients(baseline_dir)
    films = [record for record in held_out if record.patient_id not in learned]
    if not films:
        raise ValueError(f"every {split} film is of a patient {baseline_dir} learned from")
    cards = {folder: load_model_card(folder) for folder in (model_dir, baseline_dir)}
    scored = {
        folder: predict(Path(folder), card, {split: films}, batch_size=16)[split]
        for folder, card in cards.items()
    }
    ours, theirs = scored[model_dir], scored[baseline_dir]
    difference, interval, not_better = paired_bootstrap_difference(
        ours.labels, ours.probabilities, theirs.probabilities, rounds, seed
    )
    return Comparison(
        model=f"{cards[model_dir].name} {cards[model_dir].version}",
        baseline=f"{cards[baseline_dir].name} {cards[baseline_dir].version}",
        split=split,
        n_images=len(films),
        n_left_out=len(held_out) - len(films),
        mean_auroc=round(float(mean_auroc(ours.labels, ours.probabilities) or 0.0), 4),
        baseline_mean_auroc=round(float(mean_auroc(theirs.labels, theirs.probabilities) or 0.0), 4),
        difference=round(difference, 4),
        difference_ci=(round(float(interval[0]), 4), round(float(interval[1]), 4)),
        share_not_better=round(not_better, 4),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__)
    parser.add_argument(
        "--model-dir", required=True, help="the model to judge (its splits.csv holds out the films)"
    )
    parser.add_argument(
        "--baseline-dir", required=True, help="the earlier model folder (with its splits.csv)"
    )
    parser.add_argument(
        "--dataset", action="append", required=True, metavar="FOLDER", help="as the model trained"
    )
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the comparison as JSON here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = compare(
        args.model_dir, args.baseline_dir, tuple(args.dataset), args.split, args.bootstrap, args.seed
    )
    text = json.dumps(asdict(result), indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
