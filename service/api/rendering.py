"""Heatmap display: upsample a [0, 1] map, colour it, lay it over the X-ray, encode a PNG.

Images are 8-bit palette PNGs so a 14-label answer stays small:
- overlay: the palette is every blend of GREY_LEVELS X-ray shades with HEAT_LEVELS heat colours
  (index = grey * HEAT_LEVELS + heat), the heat colour weighted by OVERLAY_ALPHA * heat so cool
  regions show the plain radiograph;
- mask: the colour map alone, with transparency falling with the heat (alpha = heat), for a
  client to lay over its own display of the image.
The colour map is Google's Turbo (polynomial approximation by Anton Mikhailov), in numpy.
"""

import base64
import io

import numpy as np
from PIL import Image

from service.api.heatmaps import HeatmapStyle

GREY_LEVELS = 16
HEAT_LEVELS = 16
OVERLAY_ALPHA = 0.6
MASK_LEVELS = 256
PNG_COMPRESS_LEVEL = 6

_TURBO_RED = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_TURBO_GREEN = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_TURBO_BLUE = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)


def turbo(values: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] for values in [0, 1] (outside values are clipped)."""
    x = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    channels = [
        np.polynomial.polynomial.polyval(x, coefficients)
        for coefficients in (_TURBO_RED, _TURBO_GREEN, _TURBO_BLUE)
    ]
    return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def upsample(heatmap: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bilinear upsampling of an (h, w) map, clipped to [0, 1]."""
    image = Image.fromarray(np.ascontiguousarray(heatmap, dtype=np.float32))
    resized = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(resized, 0.0, 1.0)


def _levels(values: np.ndarray, count: int) -> np.ndarray:
    return np.rint(np.clip(values, 0.0, 1.0) * (count - 1)).astype(np.uint8)


def overlay_palette() -> np.ndarray:
    """(GREY_LEVELS * HEAT_LEVELS, 3) uint8: every grey shade blended with every heat colour."""
    grey = np.linspace(0.0, 1.0, GREY_LEVELS)[:, None, None]
    heat = np.linspace(0.0, 1.0, HEAT_LEVELS)
    alpha = (OVERLAY_ALPHA * heat)[None, :, None]
    blended = (1.0 - alpha) * grey + alpha * turbo(heat)[None, :, :]
    return np.rint(blended.reshape(-1, 3) * 255).astype(np.uint8)


def mask_palette() -> tuple[np.ndarray, bytes]:
    """(MASK_LEVELS, 3) uint8 colours and their alpha bytes (transparent where there is no heat)."""
    heat = np.linspace(0.0, 1.0, MASK_LEVELS)
    colours = np.rint(turbo(heat) * 255).astype(np.uint8)
    return colours, bytes(np.rint(heat * 255).astype(np.uint8).tolist())


_OVERLAY_PALETTE = overlay_palette()
_MASK_COLOURS, _MASK_ALPHA = mask_palette()


def render_overlay(heatmap: np.ndarray, background: np.ndarray) -> Image.Image:
    """Palette image of the (size, size) heat in [0, 1] over the (size, size) grey radiograph."""
    indices = _levels(background, GREY_LEVELS).astype(np.uint16) * HEAT_LEVELS + _levels(heatmap, HEAT_LEVELS)
    image = Image.fromarray(indices.astype(np.uint8))  # "L"; putpalette makes it "P"
    image.putpalette(_OVERLAY_PALETTE.tobytes())
    return image


def render_mask(heatmap: np.ndarray) -> Image.Image:
    image = Image.fromarray(_levels(heatmap, MASK_LEVELS))
    image.putpalette(_MASK_COLOURS.tobytes())
    image.info["transparency"] = _MASK_ALPHA
    return image


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    options = {"transparency": image.info["transparency"]} if "transparency" in image.info else {}
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, **options)
    return buffer.getvalue()


def render_heatmap(heatmap: np.ndarray, size: int, style: HeatmapStyle, background: np.ndarray | None) -> str:
    """Base64 PNG of one (h, w) heatmap in [0, 1] at size x size in `style`."""
    upsampled = upsample(heatmap, size)
    if style is HeatmapStyle.OVERLAY:
        if background is None or background.shape != (size, size):
            raise ValueError(f"an overlay needs the ({size}, {size}) radiograph")
        image = render_overlay(upsampled, background)
    else:
        image = render_mask(upsampled)
    return base64.b64encode(encode_png(image)).decode("ascii")
