"""Resumable training state: saved atomically, read back exactly, refused for another run."""

from pathlib import Path

import numpy as np
import pytest

from training.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    RunState,
    check_same_run,
    load_state,
    save_state,
)

RECIPE = {"epochs": 3, "learning_rate": 0.001, "seed": 7}


def state(epochs_done: int) -> RunState:
    rng = np.random.default_rng(5)
    rng.random(3)  # a state mid-stream, not the seed's first
    return RunState(
        epochs_done=epochs_done,
        model_weights=[np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)],
        optimizer_variables=[np.array(4, dtype=np.int64), np.full((2, 3), 0.5, np.float32)],
        average=[np.zeros((2, 3), np.float32), np.zeros(3, np.float32)],
        average_steps=4,
        batch_order=np.array([3, 1, 0, 2]),
        rng_state=dict(rng.bit_generator.state),
        fingerprint={"recipe": RECIPE, "splits_sha256": "ab"},
        monitor={"best": 0.6, "best_epoch": 1, "stopped": False},
    )


def test_a_saved_state_reads_back_exactly(tmp_path: Path) -> None:
    saved = state(2)
    save_state(saved, tmp_path)
    loaded = load_state(tmp_path)
    assert loaded.epochs_done == 2 and loaded.average_steps == 4 and loaded.monitor == saved.monitor
    for ours, theirs in (
        (saved.model_weights, loaded.model_weights),
        (saved.optimizer_variables, loaded.optimizer_variables),
        (saved.average, loaded.average),
        ([saved.batch_order], [loaded.batch_order]),
    ):
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    again = np.random.default_rng(0)
    again.bit_generator.state = loaded.rng_state
    original = np.random.default_rng(0)
    original.bit_generator.state = saved.rng_state
    np.testing.assert_array_equal(again.random(4), original.random(4))  # the stream continues


def test_saving_replaces_the_previous_epoch_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    save_state(state(1), tmp_path)
    save_state(state(2), tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [CHECKPOINT_FILE]
    assert load_state(tmp_path).epochs_done == 2


def test_resuming_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint to resume from"):
        load_state(tmp_path)


def test_another_runs_checkpoint_is_refused_naming_the_differences(tmp_path: Path) -> None:
    saved = {"recipe": RECIPE, "splits_sha256": "ab"}
    check_same_run(saved, {"recipe": dict(RECIPE), "splits_sha256": "ab"}, tmp_path)
    other = {"recipe": RECIPE | {"epochs": 5}, "splits_sha256": "cd"}
    with pytest.raises(CheckpointError, match=r"different run.*epochs 3 there, 5 here; the patient split"):
        check_same_run(saved, other, tmp_path)
