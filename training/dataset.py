"""Training input path: records -> cached resized greyscale images -> augmented, normalised batches.

Images are read once through cxr.preprocessing (the function the service calls) and kept at the
model's input size; normalisation is cxr.preprocessing.normalise, applied per batch after augmentation.
"""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from cxr.model_card import Normalisation
from cxr.preprocessing import load_grey, normalise
from training.augment import AugmentConfig, augment_grey, mixup
from training.data import Record


class SmallFilmError(ValueError):
    """A film that may be held out for validation or test is smaller than the model's input."""


def check_film_sizes(records: Sequence[Record], size: int) -> None:
    """Refuse films below the input size among those that may be validated or tested on: a
    thumbnail upscaled to the input is not the full-resolution film the service will read."""
    for record in records:
        with Image.open(record.path) as image:  # reads the header only
            width, height = image.size
        if min(width, height) < size:
            raise SmallFilmError(
                f"{record.path} is {width}x{height}, smaller than the {size} px input: validation and "
                f"test hold only full-resolution films; pass its folder ({record.dataset}) "
                "with --train-only-dataset"
            )


def load_images(records: Sequence[Record], size: int, workers: int = 4) -> np.ndarray:
    """(n, size, size) float32 greyscale [0, 1], resized by the shared preprocessing."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(lambda record: load_grey(str(record.path), size), records))
    return np.stack(images) if images else np.zeros((0, size, size), dtype=np.float32)


def normalisation_of(images: np.ndarray) -> Normalisation:
    """Mean and standard deviation of the training split's resized pixels."""
    return Normalisation(mean=float(images.mean()), std=float(images.std()))


def model_inputs(images: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """(n, size, size, 3) network inputs from cached greyscale images."""
    return normalise(images, normalisation.mean, normalisation.std)


class XrayBatches:
    """Batches of (inputs, targets); shuffled and augmented when training.

    Training consumes whole epochs as arrays (`epoch_arrays`): a Python generator feeding
    `model.fit` makes TensorFlow's generator dataset set glibc's M_TRIM_THRESHOLD, and every
    large tensor then goes through mmap/munmap (measured: 108 s per epoch instead of 35 s here).
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        normalisation: Normalisation,
        batch_size: int,
        *,
        train: bool = False,
        seed: int = 0,
        augment: AugmentConfig | None = None,
        mixup_alpha: float = 0.0,
        max_steps: int | None = None,
    ) -> None:
        self.images = images
        self.targets = targets.astype(np.float32)
        self.normalisation = normalisation
        self.batch_size = batch_size
        self.train = train
        self.augment = augment or AugmentConfig()
        self.mixup_alpha = mixup_alpha
        self.max_steps = max_steps
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        if train:
            self.rng.shuffle(self.order)

    def __len__(self) -> int:
        steps = int(np.ceil(len(self.images) / self.batch_size))
        return min(steps, self.max_steps) if self.max_steps else steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        images, targets = self.images[chosen], self.targets[chosen]
        if self.train:
            images = np.stack([augment_grey(image, self.rng, self.augment) for image in images])
            images, targets = mixup(images, targets, self.mixup_alpha, self.rng)
        return model_inputs(images, self.normalisation), targets

    def epoch_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """All batches of one epoch, concatenated in order, then reshuffled for the next epoch."""
        batches = [self[index] for index in range(len(self))]
        if self.train:
            self.rng.shuffle(self.order)
        return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
