"""Keras callbacks: weight averaging and validation AUROC with early stopping and best checkpoint."""

import logging
import math
from pathlib import Path

import keras
import numpy as np

from training.metrics import mean_auroc

log = logging.getLogger(__name__)


class WeightAveraging(keras.callbacks.Callback):
    """Exponential moving average of all model variables (BatchNorm statistics included).

    With a few hundred images validation AUROC jumps from epoch to epoch; the averaged weights are
    what is validated, checkpointed and shipped.
    """

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.steps = 0
        self.average: list[np.ndarray] = []

    def on_train_begin(self, logs=None) -> None:
        if self.average:  # fit is called once per epoch; keep averaging across calls
            return
        self.average = [np.array(variable.numpy(), copy=True) for variable in self.model.weights]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.steps += 1
        decay = min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))  # warm-up, as tf.train.EMA
        for average, variable in zip(self.average, self.model.weights, strict=True):
            average *= decay
            average += (1.0 - decay) * variable.numpy()

    def swap(self) -> None:
        """Exchange the live and the averaged weights (call twice to restore)."""
        live = [variable.numpy() for variable in self.model.weights]
        for variable, average in zip(self.model.weights, self.average, strict=True):
            variable.assign(average)
        self.average = live


class ValidationMonitor(keras.callbacks.Callback):
    """Mean validation AUROC each epoch (logged as `val_mean_auroc`), best checkpoint, early stopping."""

    def __init__(
        self,
        inputs: np.ndarray,
        labels: np.ndarray,
        checkpoint: Path,
        patience: int,
        averaging: WeightAveraging | None = None,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.labels = labels
        self.checkpoint = checkpoint
        self.patience = patience
        self.averaging = averaging
        self.batch_size = batch_size
        self.best = -math.inf
        self.best_epoch = -1
        self.stopped = False

    def on_epoch_end(self, epoch, logs=None) -> None:
        logs = logs if logs is not None else {}
        if self.averaging:
            self.averaging.swap()
        try:
            predictions = self.model.predict(self.inputs, batch_size=self.batch_size, verbose=0)
            score = mean_auroc(self.labels, predictions)
            score = -math.inf if score is None else score
            if score > self.best:
                self.best, self.best_epoch = score, epoch
                self.model.save(self.checkpoint)
        finally:
            if self.averaging:
                self.averaging.swap()
        logs["val_mean_auroc"] = score
        log.info(
            "epoch %d: val_mean_auroc %.4f (best %.4f at epoch %d)",
            epoch + 1,
            score,
            self.best,
            self.best_epoch + 1,
        )
        if epoch - self.best_epoch >= self.patience:
            log.info("early stop: no improvement for %d epochs", self.patience)
            self.stopped = True
