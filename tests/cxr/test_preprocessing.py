"""The one preprocessing path: resize, normalise, three channels."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.imaging import decode_image
from cxr.preprocessing import load_grey, normalise, preprocess_bytes, preprocess_pixels, resize_grey

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted(FIXTURES.glob("*.png"))


@pytest.mark.parametrize("size", [32, 128, 224])
def test_resize_gives_a_square_float_image_in_range(size: int) -> None:
    pixels = decode_image(IMAGES[0].read_bytes()).pixels
    resized = resize_grey(pixels, size)
    assert resized.shape == (size, size) and resized.dtype == np.float32
    assert resized.min() >= -1e-6 and resized.max() <= 1 + 1e-6


def test_resize_keeps_a_constant_image_constant_and_stretches_non_square() -> None:
    resized = resize_grey(np.full((300, 200), 0.25, dtype=np.float32), 64)
    assert resized.shape == (64, 64)
    np.testing.assert_allclose(resized, 0.25, atol=1e-6)


def test_resize_works_in_float_precision() -> None:
    ramp = np.tile(np.linspace(0, 1, 512, dtype=np.float32), (512, 1))
    resized = resize_grey(ramp, 64)
    assert len(np.unique(resized)) > 60  # not quantised to 8 bits
    assert not np.allclose(resized * 255, np.round(resized * 255))


def test_normalise_standardises_and_repeats_into_three_channels() -> None:
    pixels = np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)
    standard = normalise(pixels, 0.5, 0.25)
    assert standard.shape == (2, 2, 3) and standard.dtype == np.float32
    np.testing.assert_allclose(standard[..., 0], [[-2.0, 0.0], [2.0, -1.0]])
    np.testing.assert_array_equal(standard[..., 0], standard[..., 2])


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_bytes_pixels_and_file_paths_agree_exactly(path: Path) -> None:
    data = path.read_bytes()
    from_bytes = preprocess_bytes(data, 64, 0.5, 0.25)
    from_pixels = preprocess_pixels(decode_image(data).pixels, 64, 0.5, 0.25)
    from_file = normalise(load_grey(str(path), 64), 0.5, 0.25)
    from_float_image = preprocess_pixels(decode_image(data).float_image, 64, 0.5, 0.25)  # the service's
    assert from_bytes.shape == (64, 64, 3) and from_bytes.dtype == np.float32
    np.testing.assert_array_equal(from_bytes, from_pixels)
    np.testing.assert_array_equal(from_bytes, from_file)
    np.testing.assert_array_equal(from_bytes, from_float_image)


def test_resize_takes_only_a_float_pillow_image() -> None:
    with pytest.raises(ValueError, match="float"):
        resize_grey(Image.new("L", (64, 64)), 32)


def test_an_rgb_png_of_a_grey_image_preprocesses_like_the_grey_one(tmp_path: Path) -> None:
    grey = Image.open(IMAGES[0]).convert("L")
    grey_path, rgb_path = tmp_path / "grey.png", tmp_path / "rgb.png"
    grey.save(grey_path)
    grey.convert("RGB").save(rgb_path)
    np.testing.assert_array_equal(
        preprocess_bytes(grey_path.read_bytes(), 64, 0.5, 0.25),
        preprocess_bytes(rgb_path.read_bytes(), 64, 0.5, 0.25),
    )
