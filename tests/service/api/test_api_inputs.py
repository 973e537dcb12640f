"""The same radiograph in other encodings gives the same probabilities (within 0.01).

`IMAGE_VARIANTS` maps a name to a function of the 8-bit PNG's greyscale pixels returning file
bytes; other input forms (DICOM variants) can be checked the same way with
`api_helpers.predict_probabilities`.
"""

import io
from collections.abc import Callable

import numpy as np
import pytest
from api_helpers import max_difference, predict_probabilities
from fastapi.testclient import TestClient
from PIL import Image

TOLERANCE = 0.01


def _save(image: Image.Image, format: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


IMAGE_VARIANTS: dict[str, Callable[[np.ndarray], bytes]] = {
    "png-8bit-grey": lambda grey: _save(Image.fromarray(grey)),
    "jpeg-q95": lambda grey: _save(Image.fromarray(grey), "JPEG", quality=95),
    "jpeg-rgb-q95": lambda grey: _save(Image.fromarray(_rgb(grey)), "JPEG", quality=95),
    "png-rgb": lambda grey: _save(Image.fromarray(_rgb(grey))),
    "png-rgba": lambda grey: _save(Image.fromarray(np.dstack([_rgb(grey), np.full_like(grey, 255)]))),
    "png-grey-alpha": lambda grey: _save(Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]))),
    "png-16bit": lambda grey: _save(Image.fromarray(grey.astype(np.uint16) * 257)),
    "png-palette": lambda grey: _save(Image.fromarray(grey).convert("P")),
}


@pytest.fixture(scope="module")
def grey(radiograph_png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(radiograph_png))
    assert image.mode == "L"
    return np.asarray(image)


@pytest.fixture(scope="module")
def reference(client: TestClient, radiograph_png: bytes) -> dict[str, float]:
    return predict_probabilities(client, radiograph_png)


@pytest.mark.parametrize("variant", list(IMAGE_VARIANTS))
def test_variant_matches_the_8bit_png(
    client: TestClient, grey: np.ndarray, reference: dict[str, float], variant: str
) -> None:
    data = IMAGE_VARIANTS[variant](grey)
    assert max_difference(predict_probabilities(client, data), reference) <= TOLERANCE


def test_16bit_png_is_read_as_16_bit(grey: np.ndarray) -> None:
    image = Image.open(io.BytesIO(IMAGE_VARIANTS["png-16bit"](grey)))
    assert image.mode.startswith("I")
