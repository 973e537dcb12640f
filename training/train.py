"""Train DenseNet121 on ChestX-ray14 and write the model, its card and its logs."""

import contextlib
import csv
import datetime
import io
import logging
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np

from cxr.labels import LABELS
from cxr.model_card import (
    ModelCard,
    TrainingData,
    load_model_card,
    save_model_card,
    sha256_file,
    verify_weights,
)
from training.callbacks import ValidationMonitor, WeightAveraging
from training.checkpoint import RunState, assign_all, check_same_run, fingerprint, load_state, save_state
from training.data import DatasetSource, Record, data_sources, labels_matrix, read_datasets, read_teachers
from training.dataset import XrayBatches, check_film_sizes, load_images, model_inputs, normalisation_of
from training.evaluation import inherited_thresholds, split_metrics, thresholds_for
from training.loss import class_weights, make_weighted_bce
from training.model import LAST_CONV_LAYER, build_model
from training.splits import (
    SPLITS,
    add_train_only,
    check_no_leakage,
    fold_validation_into_train,
    keep_in_train,
    split_by_patient,
)

log = logging.getLogger(__name__)
WEIGHTS_FILE = "model.keras"
# TrainConfig fields that are not the recipe: file locations, or recorded elsewhere in the card.
NOT_RECIPE = (
    "labels_csv",
    "datasets",
    "train_only_datasets",
    "out_dir",
    "images_dir",
    "resume",
    "stop_after",
    "run_eagerly",
    "checkpoint_dir",
    "thresholds_from",
    "init_from",
    "name",
    "version",
    "split",
)


@dataclass
class TrainConfig:
    out_dir: str
    # The data: one label table (--labels-csv, --images-dir, --teacher-csv) and/or dataset folders
    # (images_labels.csv, images/, reference/ teacher probabilities), combined into one run.
    labels_csv: str | None = None
    images_dir: str | None = None
    datasets: tuple[str, ...] = ()
    train_only_datasets: tuple[str, ...] = ()  # e.g. thumbnails: never in validation or test
    input_size: int = 128
    epochs: int = 90
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_epochs: int = 2
    weights: str | None = None  # None (random), "imagenet" or a backbone weights file
    teacher_csv: str | None = None
    teacher_weight: float = 0.9  # target = (1 - w) * label + w * teacher probability
    mixup_alpha: float = 0.0
    ema_decay: float = 0.99
    patience: int = 20
    seed: int = 7  # the patient split; also the training randomness unless train_seed is given
    # Weights initialisation, shuffling and augmentation (None: `seed`): another value trains
    # another member on the same split.
    train_seed: int | None = None
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    strategy: str = "default"
    max_steps: int | None = None  # per epoch, for smoke runs
    max_images: int | None = None  # for smoke runs
    name: str = "chexnet-densenet121"
    version: str = "1.2.1"
    checkpoint_dir: str | None = None
    # Final fit: fold the validation split into training and train exactly `epochs` epochs (no early
    # stopping), for a recipe already chosen on validation.
    refit: bool = False
    # A refit's thresholds: those of this model folder, the recipe's validation run.
    thresholds_from: str | None = None
    # Start from this model folder's weights (at this run's input size, e.g. 128 px -> 224 px); the
    # patients it learned from only ever train here, so validation and test stay unseen by both.
    init_from: str | None = None
    resume: bool = False  # continue from the checkpoint of the last finished epoch
    stop_after: int | None = None  # stop (checkpointed) after this epoch, e.g. a time-limited job
    # Op by op, no traced graph: tracing DenseNet121's training step costs about a minute on 2 cores,
    # more than a smoke run's few steps (same results; real runs are much faster traced).
    run_eagerly: bool = False

    def __post_init__(self) -> None:
        if not self.labels_csv and not self.datasets:
            raise ValueError("no data: give --labels-csv or at least one --dataset folder")
        if self.refit != bool(self.thresholds_from):
            raise ValueError(
                "--refit and --thresholds-from go together: a refit adopts its validation run's thresholds"
            )

    @property
    def training_seed(self) -> int:
        return self.seed if self.train_seed is None else self.train_seed


def make_strategy(name: str) -> Callable[[], contextlib.AbstractContextManager]:
    """The scope the model is built in: TensorFlow's own engine for more hardware (several GPUs,
    several machines in TF_CONFIG), or none on Keras's other backends (one accelerator)."""
    if keras.backend.backend() != "tensorflow":
        if name != "default":
            raise ValueError(f"--strategy {name} needs KERAS_BACKEND=tensorflow")
        return contextlib.nullcontext
    import tensorflow as tf  # only the TensorFlow backend has distribution strategies

    if name == "default":
        return tf.distribute.get_strategy().scope
    if name == "mirrored":
        return tf.distribute.MirroredStrategy().scope
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy().scope
    raise ValueError(f"unknown strategy {name!r}: default, mirrored or multiworker")


def seed_everything(seed: int) -> None:
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


def sources_of(config: TrainConfig) -> list[DatasetSource]:
    return data_sources(config.labels_csv, config.images_dir, config.datasets, config.train_only_datasets)


def ancestor_patients(model_dir: str | Path) -> set[str]:
    """The patients a model folder trained or chose its epoch on (its splits.csv, all but test)."""
    path = Path(model_dir) / "splits.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: --init-from needs the starting model's split")
    with open(path, newline="") as handle:
        return {row["PatientId"] for row in csv.DictReader(handle) if row["split"] != "test"}


def make_splits(records: list[Record], config: TrainConfig) -> dict[str, list[Record]]:
    """The official test list when present, otherwise a seeded patient-level split; train-only
    records (thumbnails) then join training unless their patient is held out. With --init-from,
    the patients the starting model learned from join training before the split."""
    train_only = [record for record in records if record.train_only]
    records = [record for record in records if not record.train_only]
    learned = ancestor_patients(config.init_from) if config.init_from else set()
    inherited = [record for record in records if record.patient_id in learned]
    records = [record for record in records if record.patient_id not in learned]
    if any(record.official_split for record in records):
        test = [record for record in records if record.official_split == "test"]
        rest = [record for record in records if record.official_split != "test"]
        train_share = config.split[0] / (config.split[0] + config.split[1])
        inner = split_by_patient(rest, (train_share, 1.0 - train_share, 0.0), config.seed)
        splits = {"train": inner["train"], "validation": inner["validation"], "test": test}
    else:
        splits = split_by_patient(records, config.split, config.seed)
    splits = keep_in_train(splits, inherited)
    splits, left_out = add_train_only(splits, train_only)
    if left_out:
        log.info("%d train-only images left out: their patients are held out", len(left_out))
    check_no_leakage(splits)
    return splits


def training_targets(records: list[Record], config: TrainConfig) -> np.ndarray:
    """Labels, or labels blended with teacher probabilities (distillation) where a teacher exists."""
    labels = labels_matrix(records)
    tables: list[str | Path] = [config.teacher_csv] if config.teacher_csv else []
    tables += [path for source in sources_of(config) for path in source.teacher_csvs]
    if not tables or config.teacher_weight == 0:
        return labels
    teacher = read_teachers(tables)
    targets = labels.copy()
    taught = 0
    for i, record in enumerate(records):
        if record.image in teacher:
            targets[i] = (1 - config.teacher_weight) * labels[i] + config.teacher_weight * teacher[
                record.image
            ]
            taught += 1
    log.info("distillation: %d of %d training images have teacher probabilities", taught, len(records))
    return targets


def train(config: TrainConfig) -> ModelCard | None:
    """Train and write the model folder; None when --stop-after stopped the run (checkpointed)."""
    inherited = inherited_thresholds(config.thresholds_from) if config.thresholds_from else None  # fail fast
    seed_everything(config.training_seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = Path(config.checkpoint_dir or out_dir / "checkpoints")
    checkpoint_dir.mkdir(parents=True, exist_ok=True)

    records = read_datasets(sources_of(config))
    if config.max_images:
        records = records[: config.max_images]
    check_film_sizes([record for record in records if not record.train_only], config.input_size)
    splits = make_splits(records, config)
    if config.refit:
        splits = fold_validation_into_train(splits)
    split_table = splits_csv(splits)
    run_fingerprint = fingerprint(_recipe(config, None), split_table)
    resumed = load_state(checkpoint_dir) if config.resume else None
    if resumed:  # refused before anything is written when the checkpoint is another run's
        check_same_run(resumed.fingerprint, run_fingerprint, checkpoint_dir)
    (out_dir / "splits.csv").write_text(split_table)
    log.info("split sizes: %s", {name: len(part) for name, part in splits.items()})

    images = {name: load_images(part, config.input_size) for name, part in splits.items()}
    normalisation = normalisation_of(images["train"])
    train_labels = labels_matrix(splits["train"])
    w_pos, w_neg = class_weights(train_labels)
    targets = training_targets(splits["train"], config)

    batches = XrayBatches(
        images["train"],
        targets,
        normalisation,
        config.batch_size,
        train=True,
        seed=config.training_seed,
        mixup_alpha=config.mixup_alpha,
        max_steps=config.max_steps,
    )
    steps_per_epoch = len(batches)
    scope = make_strategy(config.strategy)
    with scope():
        model = build_model(config.input_size, config.weights)
        if config.init_from:
            model.set_weights(starting_weights(config.init_from))
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10,
            decay_steps=max(1, steps_per_epoch * (config.epochs - config.warmup_epochs)),
            warmup_target=config.learning_rate,
            warmup_steps=steps_per_epoch * config.warmup_epochs,
            alpha=0.01,
        )
        # TensorFlow's XLA measured slower here (0.16 vs 0.13 s per image at 128 px on 2 cores);
        # JAX always compiles (uncompiled it runs op by op).
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=make_weighted_bce(w_pos, w_neg),
            jit_compile=keras.backend.backend() != "tensorflow" and not config.run_eagerly,
            run_eagerly=config.run_eagerly,
        )

    averaging = WeightAveraging(config.ema_decay) if config.ema_decay > 0 else None
    callbacks: list[keras.callbacks.Callback] = [averaging] if averaging else []
    monitor = None
    if not config.refit:
        validation_inputs = model_inputs(images["validation"], normalisation)
        validation_labels = labels_matrix(splits["validation"])
        monitor = ValidationMonitor(
            validation_inputs, validation_labels, checkpoint_dir / "best.keras", config.patience, averaging
        )
        callbacks.append(monitor)
    log_path = out_dir / "training_log.csv"
    start_epoch = 0
    if resumed:
        with scope():
            start_epoch = restore(resumed, model, batches, averaging, monitor, checkpoint_dir)
        _truncate_log(log_path, start_epoch)  # an epoch logged but not checkpointed runs again
        log.info("resuming after epoch %d of %d from %s", start_epoch, config.epochs, checkpoint_dir)
    else:
        log_path.unlink(missing_ok=True)
    callbacks.append(keras.callbacks.CSVLogger(str(log_path), append=True))
    stopped = bool(monitor and monitor.stopped)
    for epoch in range(start_epoch, config.epochs):
        if stopped:
            break
        inputs, epoch_targets = batches.epoch_arrays()
        model.fit(
            inputs,
            epoch_targets,
            batch_size=config.batch_size,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,  # XrayBatches already shuffled the epoch
            callbacks=callbacks,
            verbose=1 if _interactive() else 2,
        )
        stopped = bool(monitor and monitor.stopped)
        save_state(capture(epoch + 1, model, batches, averaging, monitor, run_fingerprint), checkpoint_dir)
        if config.stop_after is not None and epoch + 1 >= config.stop_after and epoch + 1 < config.epochs:
            done = epoch + 1
            log.info("stopped after epoch %d of %d; --resume continues", done, config.epochs)
            return None

    weights_path = out_dir / WEIGHTS_FILE
    metrics = []
    if monitor:
        final = keras.models.load_model(monitor.checkpoint, compile=False)
        validation_probabilities = final.predict(validation_inputs, batch_size=32, verbose=0)
        thresholds, threshold_rule = thresholds_for(validation_labels, validation_probabilities)
        metrics.append(
            split_metrics("validation", validation_labels, validation_probabilities, bootstrap_rounds=0)
        )
    else:
        if averaging:
            averaging.swap()  # ship the averaged weights, as the monitor would have
        final = build_model(config.input_size)  # the weights alone: no optimiser state in the file
        final.set_weights(model.get_weights())
        assert inherited is not None
        thresholds, threshold_rule = inherited
    final.save(weights_path)
    card = ModelCard(
        name=config.name,
        version=config.version,
        created=datetime.date.today().isoformat(),
        labels=list(LABELS),
        input_size=config.input_size,
        normalisation=normalisation,
        thresholds=thresholds,
        threshold_rule=threshold_rule,
        last_conv_layer=LAST_CONV_LAYER,
        weights_file=WEIGHTS_FILE,
        sha256=sha256_file(weights_path),
        training=TrainingData(
            dataset="NIH ChestX-ray14: " + ", ".join(_data_names(config)),
            split_rule=_split_rule(config, records),
            n_train=len(splits["train"]),
            n_validation=len(splits["validation"]),
            n_test=len(splits["test"]),
            seed=config.seed,
            recipe=_recipe(config, monitor),
        ),
        metrics=metrics,  # a refit has no validation images; `python -m training.evaluate` adds test
    )
    save_model_card(card, out_dir)
    if monitor:
        log.info("best validation mean AUROC %.4f at epoch %d", monitor.best, monitor.best_epoch + 1)
    log.info("model in %s", out_dir)
    return card


def starting_weights(model_dir: str | Path) -> list[np.ndarray]:
    """A model folder's weights (sha256 checked); DenseNet's do not depend on the input size."""
    card = load_model_card(model_dir)
    return keras.models.load_model(verify_weights(card, model_dir), compile=False).get_weights()


def capture(
    epochs_done: int,
    model: keras.Model,
    batches: XrayBatches,
    averaging: WeightAveraging | None,
    monitor: ValidationMonitor | None,
    run_fingerprint: dict[str, object],
) -> RunState:
    return RunState(
        epochs_done=epochs_done,
        model_weights=[np.asarray(variable.numpy()) for variable in model.weights],
        optimizer_variables=[np.asarray(variable.numpy()) for variable in model.optimizer.variables],
        average=list(averaging.average) if averaging else [],
        average_steps=averaging.steps if averaging else 0,
        batch_order=batches.order.copy(),
        rng_state=dict(batches.rng.bit_generator.state),
        fingerprint=dict(run_fingerprint),
        monitor={"best": monitor.best, "best_epoch": monitor.best_epoch, "stopped": monitor.stopped}
        if monitor
        else {},
    )


def restore(
    state: RunState,
    model: keras.Model,
    batches: XrayBatches,
    averaging: WeightAveraging | None,
    monitor: ValidationMonitor | None,
    checkpoint_dir: Path,
) -> int:
    """Put a saved state back into the run's objects; returns the number of epochs already done."""
    assign_all(model.weights, state.model_weights, "model weights", checkpoint_dir)
    model.optimizer.build(model.trainable_variables)
    assign_all(model.optimizer.variables, state.optimizer_variables, "optimiser variables", checkpoint_dir)
    if averaging:
        averaging.average = [np.array(value, copy=True) for value in state.average]
        averaging.steps = state.average_steps
    batches.order = np.array(state.batch_order)
    batches.rng.bit_generator.state = state.rng_state
    if monitor and state.monitor:
        monitor.best = float(state.monitor["best"])
        monitor.best_epoch = int(state.monitor["best_epoch"])
        monitor.stopped = bool(state.monitor["stopped"])
    return state.epochs_done


def _truncate_log(log_path: Path, epochs_done: int) -> None:
    if not log_path.is_file():
        return
    with open(log_path, newline="") as handle:
        rows = list(csv.reader(handle))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) < epochs_done]
    with open(log_path, "w", newline="") as handle:
        csv.writer(handle).writerows(kept)


def _data_names(config: TrainConfig) -> list[str]:
    names = [config.labels_csv] if config.labels_csv else []
    names += list(config.datasets)
    names += [f"{folder} (train only)" for folder in config.train_only_datasets]
    return names


def splits_csv(splits: dict[str, list[Record]]) -> str:
    """splits.csv's text: Image, PatientId, split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Image", "PatientId", "split"])
    for name in SPLITS:
        for record in splits[name]:
            writer.writerow([record.image, record.patient_id, name])
    return buffer.getvalue()


def write_splits(splits: dict[str, list[Record]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        handle.write(splits_csv(splits))


def _split_rule(config: TrainConfig, records: list[Record]) -> str:
    if any(record.official_split for record in records):
        rule = (
            f"official test_list.txt; train/validation by patient from train_val_list.txt, seed {config.seed}"
        )
    else:
        shares = "/".join(f"{round(100 * f)}" for f in config.split)
        rule = f"patient-level, label-stratified, seed {config.seed}: {shares} train/validation/test"
    if config.init_from:
        rule += "; the patients the starting model learned from only train"
    return rule + ("; refit: validation folded into train" if config.refit else "")


def _recipe(
    config: TrainConfig, monitor: ValidationMonitor | None
) -> dict[str, str | int | float | bool | None]:
    recipe: dict[str, str | int | float | bool | None] = {
        key: value for key, value in asdict(config).items() if key not in NOT_RECIPE
    }
    if config.init_from:
        start = load_model_card(config.init_from)
        recipe["initial_weights"] = f"{start.name} {start.version} (sha256 {start.sha256[:12]})"
    if monitor:
        recipe["best_epoch"] = monitor.best_epoch + 1
        recipe["best_validation_mean_auroc"] = round(monitor.best, 4)
    return recipe


def _interactive() -> bool:
    return os.isatty(1)
