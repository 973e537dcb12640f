"""The Makefile's training targets: DATASETS combines folders, `make train` keeps the shipped recipe."""

import os
import shlex
import subprocess
from pathlib import Path

from cxr.model_card import load_model_card
from training.__main__ import build_parser

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "chexnet-densenet121"


def make_dry_run(target: str, *variables: str) -> list[list[str]]:
    """The arguments of each `python -m training` command that `make -n TARGET` would run."""
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
    commands = [shlex.split(line) for line in result.stdout.replace("\\\n", " ").strip().splitlines()]
    return [words[words.index("training") + 1 :] for words in commands if "training" in words]


def test_train_validation_combines_the_given_folders() -> None:
    (argv,) = make_dry_run(
        "train-validation", "DATASETS=data/nih data/nih-extra", "TRAIN_ONLY_DATASETS=data/nih-thumbs"
    )
    args = build_parser().parse_args(argv)
    assert args.dataset == ["data/nih", "data/nih-extra"] and args.train_only_dataset == ["data/nih-thumbs"]
    assert args.labels_csv is None and args.teacher_csv is None  # each folder's reference/ teaches


def test_without_datasets_a_validation_run_trains_phase_one_data() -> None:
    (argv,) = make_dry_run("train-validation", "DATA=data/nih")
    args = build_parser().parse_args(argv)
    assert args.labels_csv == "data/nih/images_labels.csv" and args.dataset == []
    assert args.teacher_csv == "data/nih/reference/reproduce_chexnet_preds_for_images.csv"
    assert not args.refit


def test_make_train_runs_both_phases_of_the_shipped_recipe(tmp_path: Path) -> None:
    phase1_dir = tmp_path / "phase1"
    phase1, phase2 = (
        build_parser().parse_args(argv)
        for argv in make_dry_run("train", "SHARED=data", f"PHASE1={phase1_dir}")
    )
    assert phase1.labels_csv == "data/nih/images_labels.csv" and phase1.refit and phase1.input_size == 128
    assert load_model_card(REPO / phase1.thresholds_from).version == "1.1.1"  # committed beside the model
    assert phase1.out == str(phase1_dir)
    assert phase2.dataset == ["data/nih", "data/nih-extra"] and phase2.init_from == str(phase1_dir)
    shipped = load_model_card(MODEL_DIR)
    assert phase2.out == "models/chexnet-densenet121"
    recipe = shipped.training.recipe
    for option in ("input_size", "epochs", "learning_rate", "warmup_epochs", "teacher_weight", "ema"):
        key = {"ema": "ema_decay"}.get(option, option)
        assert getattr(phase2, option) == recipe[key], option
    shares = "/".join(f"{round(100 * share)}" for share in phase2.split)
    assert f"seed {phase2.seed}: {shares} train/validation/test" in shipped.training.split_rule
    assert phase2.version == shipped.version

    # A finished phase 1 is not run again.
    phase1_dir.mkdir()
    (phase1_dir / "model_card.json").write_text("{}")
    (only,) = make_dry_run("train", "SHARED=data", f"PHASE1={phase1_dir}")
    assert build_parser().parse_args(only).init_from == str(phase1_dir)
