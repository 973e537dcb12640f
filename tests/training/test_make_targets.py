"""The Makefile's training targets: DATASETS combines folders, `make train` keeps the shipped recipe."""

import os
import shlex
import subprocess
from pathlib import Path

from cxr.model_card import load_model_card
from training.__main__ import build_parser
from training.soup import build_parser as build_soup_parser

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "chexnet-densenet121"


def make_commands(target: str, *variables: str) -> list[list[str]]:
    """The words of each command that `make -n TARGET` would run."""
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
    return [shlex.split(line) for line in result.stdout.replace("\\\n", " ").strip().splitlines()]


def training_arguments(commands: list[list[str]]) -> list[list[str]]:
    """The arguments of each `python -m training` command among `commands`."""
    return [words[words.index("training") + 1 :] for words in commands if "training" in words]


def make_dry_run(target: str, *variables: str) -> list[list[str]]:
    """The arguments of each `python -m training` command that `make -n TARGET` would run."""
    return training_arguments(make_commands(target, *variables))


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


def test_make_train_runs_phase_one_each_seed_and_their_soup(tmp_path: Path) -> None:
    phase1_dir, phase2 = tmp_path / "phase1", tmp_path / "phase2"
    variables = ("SHARED=data", f"PHASE1={phase1_dir}", f"PHASE2={phase2}")
    commands = make_commands("train", *variables)
    phase1, *seeds = (build_parser().parse_args(argv) for argv in training_arguments(commands))
    assert phase1.labels_csv == "data/nih/images_labels.csv" and phase1.refit and phase1.input_size == 128
    assert load_model_card(REPO / phase1.thresholds_from).version == "1.1.1"  # committed beside the model
    assert phase1.out == str(phase1_dir)

    shipped = load_model_card(MODEL_DIR)
    recipe = shipped.training.recipe
    assert len(seeds) == len(recipe["soup_of"].split(", ")) >= 2  # the shipped soup's ingredients
    for run in seeds:
        assert run.dataset == ["data/nih", "data/nih-extra"] and run.init_from == str(phase1_dir)
        assert run.out == f"{phase2}-s{run.train_seed}"
        assert run.version == f"{shipped.version}-s{run.train_seed}"
        for option in ("input_size", "epochs", "learning_rate", "warmup_epochs", "teacher_weight", "ema"):
            key = {"ema": "ema_decay"}.get(option, option)
            assert getattr(run, option) == recipe[key], option
        shares = "/".join(f"{round(100 * share)}" for share in run.split)
        assert f"seed {run.seed}: {shares} train/validation/test" in shipped.training.split_rule
    assert len({run.train_seed for run in seeds}) == len(seeds)

    (soup_words,) = [words for words in commands if "training.soup" in words]
    soup = build_soup_parser().parse_args(soup_words[soup_words.index("training.soup") + 1 :])
    assert soup.model_dir == [run.out for run in seeds] and soup.dataset == seeds[0].dataset
    assert soup.out == "models/chexnet-densenet121" and soup.version == shipped.version

    # A finished phase 1 and a finished seed are not run again.
    for finished in (phase1_dir, Path(seeds[1].out)):
        finished.mkdir()
        (finished / "model_card.json").write_text("{}")
    again = [build_parser().parse_args(argv) for argv in make_dry_run("train", *variables)]
    assert [run.train_seed for run in again] == [run.train_seed for run in seeds if run is not seeds[1]]


def test_make_train_with_one_seed_ships_that_run(tmp_path: Path) -> None:
    phases = (f"PHASE1={tmp_path / 'phase1'}", f"PHASE2={tmp_path / 'phase2'}")
    variables = ("SHARED=data", *phases, "PHASE2_SEEDS=7")
    *_, ship = make_commands("train", *variables)
    assert ship[0] == "cp" and ship[-1] == "models/chexnet-densenet121/"
    assert {Path(source).name for source in ship[1:-1]} >= {"model.keras", "model_card.json", "splits.csv"}
    assert {Path(source).parent for source in ship[1:-1]} == {tmp_path / "phase2-s7"}
