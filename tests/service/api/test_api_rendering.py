"""Heatmap display: colour map, upsampling, overlay and mask palette PNGs."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service.api.heatmaps import HeatmapStyle
from service.api.rendering import (
    GREY_LEVELS,
    HEAT_LEVELS,
    overlay_palette,
    render_heatmap,
    turbo,
    upsample,
)


def _png(text: str) -> Image.Image:
    data = base64.b64decode(text, validate=True)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_turbo_runs_from_dark_blue_to_dark_red() -> None:
    colours = turbo(np.linspace(0, 1, 256))
    assert colours.shape == (256, 3)
    assert colours.min() >= 0.0 and colours.max() <= 1.0
    darkest, blue, middle, high = colours[0], colours[26], colours[128], colours[-1]
    assert darkest.sum() < 0.5
    assert blue[2] > 0.8 and blue[2] > blue[0]
    assert middle[1] > 0.8  # green-yellow middle
    assert high[0] > 0.4 and high[2] < 0.1  # red end
    np.testing.assert_array_equal(turbo(np.array([-1.0, 2.0])), turbo(np.array([0.0, 1.0])))


def test_upsample_keeps_range_and_peak_location() -> None:
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[0, 3] = 1.0
    large = upsample(heatmap, 128)
    assert large.shape == (128, 128)
    assert large.min() >= 0.0 and large.max() <= 1.0
    row, column = np.unravel_index(np.argmax(large), large.shape)
    assert row < 32 and column >= 96


def test_overlay_palette_blends_grey_with_heat() -> None:
    palette = overlay_palette()
    assert palette.shape == (GREY_LEVELS * HEAT_LEVELS, 3) and palette.dtype == np.uint8
    # No heat: pure grey ramp; full heat: tinted.
    no_heat = palette[::HEAT_LEVELS]
    assert np.all(no_heat[:, 0] == no_heat[:, 1]) and np.all(no_heat[:, 1] == no_heat[:, 2])
    assert no_heat[0, 0] == 0 and no_heat[-1, 0] == 255
    full_heat = palette[HEAT_LEVELS - 1 :: HEAT_LEVELS]
    assert np.any(full_heat[:, 0] != full_heat[:, 2])


@pytest.mark.parametrize("size", [16, 128, 300])
def test_overlay_is_a_palette_png_of_the_requested_size(size: int) -> None:
    heatmap = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    background = np.linspace(0, 1, size * size, dtype=np.float32).reshape(size, size)
    image = _png(render_heatmap(heatmap, size, HeatmapStyle.OVERLAY, background))
    assert image.format == "PNG" and image.mode == "P" and image.size == (size, size)


def test_overlay_without_heat_shows_the_radiograph() -> None:
    size = 64
    background = np.tile(np.linspace(0, 1, size, dtype=np.float32), (size, 1))
    image = _png(render_heatmap(np.zeros((4, 4), np.float32), size, HeatmapStyle.OVERLAY, background))
    rgb = np.asarray(image.convert("RGB")).astype(int)
    assert np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])
    grey = rgb[..., 0] / 255.0
    assert np.max(np.abs(grey - background)) <= 0.5 / (GREY_LEVELS - 1) + 1e-6


def test_mask_is_transparent_where_there_is_no_heat() -> None:
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[2:, 2:] = 1.0
    image = _png(render_heatmap(heatmap, 64, HeatmapStyle.MASK, None))
    assert image.mode == "P" and image.size == (64, 64)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 255


def test_overlay_needs_a_background_of_the_size() -> None:
    with pytest.raises(ValueError, match="overlay needs"):
        render_heatmap(np.zeros((4, 4), np.float32), 64, HeatmapStyle.OVERLAY, np.zeros((32, 32), np.float32))
