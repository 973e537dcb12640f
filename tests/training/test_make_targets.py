"""The Makefile's training targets: DATASETS combines folders, `make train` keeps the shipped recipe."""

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from training.__main__ import build_parser

REPO = Path(__file__).resolve().parents[2]


def make_dry_run(target: str, *variables: str) -> list[str]:
    """The arguments of the `python -m training` command that `make -n TARGET` would run."""
    # Under `make test` this is a sub-make: without the parent's flags and level, and without the
    # "Entering directory" lines a sub-make prints.
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "install", target, *variables],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = result.stdout.replace("\\\n", " ").strip().splitlines()[-1]
    words = shlex.split(line)
    return words[words.index("training") + 1 :]


def test_train_validation_combines_the_given_folders() -> None:
    argv = make_dry_run(
        "train-validation", "DATASETS=data/nih data/nih-extra", "TRAIN_ONLY_DATASETS=data/nih-thumbs"
    )
    args = build_parser().parse_args(argv)
    assert args.dataset == ["data/nih", "data/nih-extra"] and args.train_only_dataset == ["data/nih-thumbs"]
    assert args.labels_csv is None and args.teacher_csv is None  # each folder's reference/ teaches


@pytest.mark.parametrize("target", ["train", "train-validation"])
def test_without_datasets_the_targets_train_the_shipped_models_data(target: str) -> None:
    args = build_parser().parse_args(make_dry_run(target, "DATA=data/nih"))
    assert args.labels_csv == "data/nih/images_labels.csv" and args.dataset == []
    assert args.teacher_csv == "data/nih/reference/reproduce_chexnet_preds_for_images.csv"
    assert args.refit == (target == "train")
