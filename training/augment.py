"""Training-time augmentation of greyscale [0, 1] images (numpy/scipy, applied before normalisation).

Small rotation, shift and zoom, and contrast. No horizontal flips: a chest film is not
left-right symmetric (heart on the left, stomach bubble, laterality of findings), and a
flipped film is an anatomy the model will never be shown.
"""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    rotation_degrees: float = 7.0
    shift_fraction: float = 0.06
    zoom_fraction: float = 0.10
    contrast_fraction: float = 0.20


def augment_grey(pixels: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One random affine transform (about the centre) and contrast change of a square image."""
    size = pixels.shape[0]
    angle = np.deg2rad(rng.uniform(-config.rotation_degrees, config.rotation_degrees))
    zoom = rng.uniform(1.0 - config.zoom_fraction, 1.0 + config.zoom_fraction)
    shift = rng.uniform(-config.shift_fraction, config.shift_fraction, size=2) * size
    # affine_transform maps output coordinates to input coordinates: the inverse transform.
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / zoom
    centre = np.array([size - 1, size - 1]) / 2.0
    offset = centre - rotation @ (centre + shift)
    moved = ndimage.affine_transform(pixels, rotation, offset=offset, order=1, mode="nearest")
    factor = rng.uniform(1.0 - config.contrast_fraction, 1.0 + config.contrast_fraction)
    mean = float(moved.mean())
    return np.clip((moved - mean) * factor + mean, 0.0, 1.0).astype(np.float32)


def mixup(
    images: np.ndarray, targets: np.ndarray, alpha: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Blend each example with a random partner (Zhang et al. 2018); alpha <= 0 leaves the batch alone."""
    if alpha <= 0:
        return images, targets
    weight = rng.beta(alpha, alpha, size=len(images)).astype(np.float32)
    partner = rng.permutation(len(images))
    image_weight = weight.reshape((-1,) + (1,) * (images.ndim - 1))
    mixed_images = image_weight * images + (1 - image_weight) * images[partner]
    mixed_targets = weight[:, None] * targets + (1 - weight[:, None]) * targets[partner]
    return mixed_images.astype(np.float32), mixed_targets.astype(np.float32)
