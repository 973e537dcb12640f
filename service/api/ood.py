"""Does a decoded image look like a frontal chest radiograph? Reasons why not, for a warning or a 422.

A few explainable statistics of the decoded greyscale pixels (and of the colour measured before
conversion to grey), no model. Each threshold lies well outside the range measured on the
1,643 shared NIH images plus the committed fixtures (none of which is flagged) and is explained
beside it (`python -m bench.guard_margins` prints the NIH ranges); tests/service/api/test_ood.py
measures both the NIH images and non-radiographs.
Pure numpy/Pillow: no FastAPI, no TensorFlow.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from cxr.imaging import DecodedImage
from cxr.preprocessing import resize_grey

# Statistics on a fixed-size copy, so they do not depend on the resolution. The copy is box-averaged
# by the largest whole factor, then resized bilinearly (Pillow's reducing_gap=1), cheaper than one
# bilinear resize of the full resolution; the NIH figures below are measured on it. The
# non-radiographs quoted beside them are the cases tests/service/api/test_ood.py flags.
ANALYSIS_SIZE = 256
LAYOUT_SIZE = 64  # a coarse copy for the left-right layout of the chest

# Mean |colour - grey| in [0, 1]: a radiograph saved as RGB or JPEG is ~0 (chroma subsampling
# noise stays under 0.01); the colour photos tested measure 0.05 to 0.2.
MAX_CHROMA = 0.04
# Standard deviation of the pixels at full resolution (so noise keeps its contrast): NIH images
# measure 0.11 to 0.34. Below 0.06 the image is blank or so flat that nothing else can be judged
# (the other checks are then skipped).
MIN_CONTRAST = 0.06
CONTRAST_SAMPLES = 1 << 16  # every k-th pixel in each direction, at most about this many
# Correlation of horizontally adjacent pixels at 256 px: radiographs are smooth (NIH >= 0.96);
# noise and textures (grass, gravel, brick) measure far less.
MIN_NEIGHBOUR_CORRELATION = 0.90
# Mean gradient magnitude over the standard deviation at 256 px, how much of the contrast is in
# the finest detail: NIH <= 0.167; photographs of coins and text measure more.
MAX_FINE_DETAIL = 0.20
# Fraction of near-white pixels (> 0.9): NIH <= 0.38 (overexposed shoulders, labels).
MAX_WHITE_FRACTION = 0.5
# A document: the most common grey level is light (paper) and many pixels are sharp edges (ink).
# NIH images have at most 7.8% edge pixels; a scanned page has more.
DOCUMENT_PAPER_LEVEL = 0.7
PAPER_LEVELS = 20  # grey levels of the histogram whose most common level is the paper's
DOCUMENT_MIN_EDGES = 0.10
EDGE_STEP = 0.1  # a gradient magnitude above this (in [0, 1] units per pixel at 256 px) is an edge
# Frontal layout, at 64 px: the spine and mediastinum make the central vertical strip brighter
# than the image mean (NIH: 1st percentile 0.21 std, one inverted film at -0.39), and the chest
# is roughly left-right symmetric (NIH: best mirror correlation median 0.85, under 0.3 in 18
# films). Only when both cues fail (midline darker than the mean and symmetry < 0.3) is the
# image called not frontal-looking: one failed cue alone happens in real films (inverted,
# rotated patients).
MIN_MIDLINE = 0.0
MIN_SYMMETRY = 0.3
MAX_SHIFT = 8  # pixels of 64: the patient may be off-centre by up to an eighth of the width


@dataclass(frozen=True)
class ImageStatistics:
    """The statistics the checks use, each explained beside its threshold above."""

    chroma: float
    contrast: float
    neighbour_correlation: float
    fine_detail: float
    white_fraction: float
    paper_level: float
    edge_fraction: float
    midline: float
    symmetry: float


def image_statistics(image: DecodedImage) -> ImageStatistics:
    """Measure `image` (greyscale pixels in [0, 1]) for the out-of-distribution checks."""
    step = max(1, int(np.sqrt(image.pixels.size / CONTRAST_SAMPLES)))
    contrast = float(image.pixels[::step, ::step].std())
    pixels = np.asarray(
        image.float_image.resize((ANALYSIS_SIZE, ANALYSIS_SIZE), Image.Resampling.BILINEAR, reducing_gap=1.0),
        dtype=np.float32,
    )
    # Few whole-array numpy calls, in place where possible: each call lets go of the GIL and takes it
    # back, a wait whenever another request's thread holds it.
    right = pixels[:, 1:] - pixels[:, :-1]
    down = pixels[1:, :-1] - pixels[:-1, :-1]
    gradient = np.square(right[:-1])
    gradient += np.square(down, out=down)
    np.sqrt(gradient, out=gradient)  # not np.hypot: slower, and [0, 1] steps cannot overflow
    # The most common of 20 grey levels; 1.0 (and resampling's rounding above it) is the top level.
    levels = np.bincount((pixels * PAPER_LEVELS).astype(np.intp).ravel(), minlength=PAPER_LEVELS)
    levels[PAPER_LEVELS - 1] = levels[PAPER_LEVELS - 1 :].sum()
    # Sums in float64, for the standard deviation and the neighbours' correlation.
    total = float(pixels.sum(dtype=np.float64))
    squares = float(np.einsum("ij,ij->", pixels, pixels, dtype=np.float64))
    std = float(np.sqrt(max(squares / pixels.size - (total / pixels.size) ** 2, 0.0)))
    layout = resize_grey(pixels, LAYOUT_SIZE).astype(np.float64)  # from 256 px: 16x fewer pixels to read
    return ImageStatistics(
        chroma=image.chroma,
        contrast=contrast,
        neighbour_correlation=_neighbour_correlation(pixels, total, squares),
        fine_detail=float(gradient.mean()) / max(std, 1e-6),
        white_fraction=np.count_nonzero(pixels > 0.9) / pixels.size,
        paper_level=float(np.argmax(levels[:PAPER_LEVELS])) / PAPER_LEVELS,
        edge_fraction=np.count_nonzero(gradient > EDGE_STEP) / gradient.size,
        midline=_midline_brightness(layout),
        symmetry=_mirror_symmetry(layout),
    )


def out_of_distribution_reasons(image: DecodedImage) -> list[str]:
    """Empty when the image looks like a chest X-ray; else one short reason per failed check."""
    stats = image_statistics(image)
    reasons = []
    if stats.chroma > MAX_CHROMA:
        reasons.append(f"colour image (chroma {stats.chroma:.2f})")
    if stats.contrast < MIN_CONTRAST:
        return [*reasons, f"nearly uniform image (contrast {stats.contrast:.3f})"]
    if stats.neighbour_correlation < MIN_NEIGHBOUR_CORRELATION:
        reasons.append(
            f"looks like noise or a texture (neighbour correlation {stats.neighbour_correlation:.2f})"
        )
    elif stats.fine_detail > MAX_FINE_DETAIL:
        reasons.append(
            f"too much fine detail for a radiograph, like a photograph (detail {stats.fine_detail:.2f})"
        )
    if stats.paper_level >= DOCUMENT_PAPER_LEVEL and stats.edge_fraction >= DOCUMENT_MIN_EDGES:
        reasons.append(f"looks like a document scan (light background, {stats.edge_fraction:.0%} edges)")
    elif stats.white_fraction > MAX_WHITE_FRACTION:
        reasons.append(f"mostly white ({stats.white_fraction:.0%} of pixels)")
    if stats.midline < MIN_MIDLINE and stats.symmetry < MIN_SYMMETRY:
        reasons.append(f"not frontal-looking (no bright midline, symmetry {stats.symmetry:.2f})")
    return reasons


def _neighbour_correlation(pixels: np.ndarray, total: float, squares: float) -> float:
    """Pearson correlation of each pixel with its right-hand neighbour (0 when either side is
    constant), from the whole image's sum and sum of squares less the last or first column."""
    first, last = pixels[:, 0].astype(np.float64), pixels[:, -1].astype(np.float64)
    products = float(np.einsum("ij,ij->", pixels[:, :-1], pixels[:, 1:], dtype=np.float64))
    count = pixels.size - pixels.shape[0]
    left_mean, right_mean = (total - last.sum()) / count, (total - first.sum()) / count
    left_var = (squares - last @ last) / count - left_mean**2
    right_var = (squares - first @ first) / count - right_mean**2
    scale = np.sqrt(max(left_var * right_var, 0.0))
    return float((products / count - left_mean * right_mean) / scale) if scale > 1e-12 else 0.0


def _midline_brightness(layout: np.ndarray) -> float:
    """Brightness of the central vertical strip (40-60% of the width) over the image mean, in std."""
    width = layout.shape[1]
    strip = layout[:, int(width * 0.4) : int(width * 0.6)]
    return float(strip.mean() - layout.mean()) / max(float(layout.std()), 1e-6)


def _mirror_symmetry(layout: np.ndarray) -> float:
    """Best correlation of the chest band (rows 20-80%) with its mirror image about a vertical
    axis within MAX_SHIFT of the centre."""
    height, width = layout.shape
    band = layout[int(height * 0.2) : int(height * 0.8)]
    inner = width - 2 * MAX_SHIFT  # a window of this width around each candidate axis
    windows = np.lib.stride_tricks.sliding_window_view(band, inner, axis=1).transpose(1, 0, 2)
    centred = windows - windows.mean(axis=(1, 2), keepdims=True)
    # All windows at once. A mirror image has the same mean and variance as the window, so the
    # Pearson correlation is the mean product over the variance (0 for a constant window).
    variance = np.mean(centred**2, axis=(1, 2))
    products = np.mean(centred * centred[:, :, ::-1], axis=(1, 2))
    correlations = np.where(variance > 1e-12, products / np.maximum(variance, 1e-12), 0.0)
    return float(correlations.max())
