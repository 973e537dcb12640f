"""One smoke training run per test session, shared by the train, evaluate and import-weights tests.

Tracing DenseNet121's training graph costs over a minute on two CPU cores, so the traced run
happens once (session scope) and the other runs go op by op; tests that change a model folder
work on a copy.
"""

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMOKE_ARGS = (
    "--input-size",
    "32",
    "--max-images",
    "40",
    "--epochs",
    "1",
    "--max-steps",
    "1",
    "--batch-size",
    "8",
)


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ARGS` from the repo; fails the test with the tail of stderr when it fails."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"python -m {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def smoke_training(nih_data: Path, out: Path, *extra: str) -> Path:
    """`python -m training` on 40 NIH images at 32 px, one step per epoch; `extra` options win."""
    run_module(
        "training",
        "--labels-csv",
        str(nih_data / "images_labels.csv"),
        "--out",
        str(out),
        *SMOKE_ARGS,
        *extra,
    )
    return out


@pytest.fixture(scope="session")
def smoke_model(nih_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model folder from one smoke training run. Do not modify it."""
    return smoke_training(nih_data, tmp_path_factory.mktemp("smoke-model"))


@pytest.fixture
def train_smoke(nih_data: Path) -> Callable[..., Path]:
    """Another smoke training run, with extra options: `train_smoke(out, "--refit", ...)`. Op by op
    (--run-eagerly: about 35 s instead of 100 s); the session's smoke_model runs the traced graph."""
    return lambda out, *extra: smoke_training(nih_data, out, "--run-eagerly", *extra)


@pytest.fixture
def smoke_copy(smoke_model: Path, tmp_path: Path) -> Path:
    """A private copy of the smoke model folder (evaluation rewrites the card)."""
    copy = tmp_path / "model"
    shutil.copytree(smoke_model, copy, ignore=shutil.ignore_patterns("checkpoints"))
    return copy
