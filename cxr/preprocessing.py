"""The one preprocessing path from image bytes to a model input tensor.

decode -> greyscale [0, 1] -> resize to the model's input size -> normalise with the training
split's mean/std -> 3 channels. Training, the export parity check, the API and the Grad-CAM
sidecar all call these functions; nothing else may re-implement them.
"""

import numpy as np
from PIL import Image

from cxr.imaging import DEFAULT_MAX_PIXELS, as_float_image, decode_image


def resize_grey(pixels: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """Resize a float greyscale image (an array, or the same as a Pillow "F" image) to size x size
    (antialiased bilinear, in float precision).

    Non-square images are stretched, as NIH images are square and CheXNet resized them directly.
    """
    if isinstance(pixels, Image.Image):
        if pixels.mode != "F":
            raise ValueError(f"resize_grey takes a float ('F') image, not mode {pixels.mode!r}")
        image = pixels
    else:
        image = as_float_image(pixels)
    resized = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def normalise(pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Standardise with the training split's statistics and repeat into 3 channels."""
    standard = (pixels.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return np.repeat(standard[..., np.newaxis], 3, axis=-1)


def preprocess_pixels(pixels: np.ndarray | Image.Image, size: int, mean: float, std: float) -> np.ndarray:
    """Greyscale [0, 1] pixels (an array or a Pillow "F" image) -> (size, size, 3) float32 model input."""
    return normalise(resize_grey(pixels, size), mean, std)


def preprocess_bytes(
    data: bytes, size: int, mean: float, std: float, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Image file bytes (PNG, JPEG, DICOM) -> (size, size, 3) float32 model input."""
    return preprocess_pixels(decode_image(data, max_pixels).pixels, size, mean, std)


def load_grey(path: str, size: int) -> np.ndarray:
    """Read an image file and resize it: the cacheable, not-yet-normalised part of preprocessing."""
    with open(path, "rb") as handle:
        return resize_grey(decode_image(handle.read()).pixels, size)
