"""Resumable training state: one file per run, rewritten atomically after every epoch.

`last.npz` in the checkpoint folder holds the model's weights, the optimiser's variables (its
iteration counter and Adam moments), the weight average (EMA), the batch order and the numpy RNG
state of the shuffling/augmentation, and a JSON block: the epochs done, the early-stopping state and
the run's fingerprint (recipe + patient split). `--resume` refuses a checkpoint whose fingerprint is
not this run's, naming what differs.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINT_FILE = "last.npz"


class CheckpointError(RuntimeError):
    """No checkpoint to resume from, or one written by a different run."""


@dataclass
class RunState:
    epochs_done: int
    model_weights: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    average: list[np.ndarray]  # the EMA of the model's weights; empty without EMA
    average_steps: int
    batch_order: np.ndarray
    rng_state: dict[str, Any]  # numpy Generator.bit_generator.state
    fingerprint: dict[str, Any]
    monitor: dict[str, Any] = field(default_factory=dict)  # best, best_epoch, stopped


def fingerprint(recipe: dict[str, Any], splits_csv: str) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: the recipe and the exact split."""
    return {"recipe": recipe, "splits_sha256": hashlib.sha256(splits_csv.encode()).hexdigest()}


def save_state(state: RunState, folder: Path) -> Path:
    """Write the state to FOLDER/last.npz atomically (a temporary file, then one rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "epochs_done": state.epochs_done,
        "average_steps": state.average_steps,
        "rng_state": state.rng_state,
        "fingerprint": state.fingerprint,
        "monitor": state.monitor,
    }
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(meta)), "batch_order": state.batch_order}
    for prefix, values in (
        ("model", state.model_weights),
        ("optimizer", state.optimizer_variables),
        ("average", state.average),
    ):
        arrays |= {f"{prefix}/{i:05d}": value for i, value in enumerate(values)}
    target = folder / CHECKPOINT_FILE
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".last-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, allow_pickle=False, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def load_state(folder: Path) -> RunState:
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from (run without --resume first)")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))

        def group(prefix: str) -> list[np.ndarray]:
            return [data[name] for name in sorted(data.files) if name.startswith(prefix + "/")]

        return RunState(
            epochs_done=int(meta["epochs_done"]),
            model_weights=group("model"),
            optimizer_variables=group("optimizer"),
            average=group("average"),
            average_steps=int(meta["average_steps"]),
            batch_order=data["batch_order"],
            rng_state=meta["rng_state"],
            fingerprint=meta["fingerprint"],
            monitor=meta["monitor"],
        )


def check_same_run(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume another run's checkpoint: a different recipe or a different split."""
    problems = [
        f"{key} {saved['recipe'].get(key)!r} there, {current['recipe'].get(key)!r} here"
        for key in sorted(set(saved["recipe"]) | set(current["recipe"]))
        if saved["recipe"].get(key) != current["recipe"].get(key)
    ]
    if saved["splits_sha256"] != current["splits_sha256"]:
        problems.append("the patient split (splits.csv) differs")
    if problems:
        raise CheckpointError(
            f"{path} was written by a different run, refusing to resume it: {'; '.join(problems)}"
        )


def assign_all(variables: list[Any], values: list[np.ndarray], what: str, path: Path) -> None:
    """Assign saved arrays to Keras variables, refusing a different count or shape."""
    shapes = [tuple(variable.shape) for variable in variables]
    if shapes != [value.shape for value in values]:
        raise CheckpointError(
            f"{path}: the saved {what} do not fit this model ({len(values)} arrays, {len(shapes)} variables)"
        )
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
