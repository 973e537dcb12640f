"""The training input path gives the service's tensor exactly, and the check would catch skew."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.imaging import decode_image
from cxr.model_card import Normalisation
from cxr.preprocessing import normalise, preprocess_bytes, resize_grey
from training.data import Record
from training.dataset import XrayBatches, load_images, model_inputs, normalisation_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
IMAGES = sorted(FIXTURES.glob("*.png"))
SIZE = 64
NORMALISATION = Normalisation(mean=0.524, std=0.260)
# The largest difference the parity check accepts between two paths (float32 round-off only).
TOLERANCE = 1e-6


def max_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def record_of(path: Path) -> Record:
    return Record(path.name, path, path.stem, np.zeros(14, dtype=np.float32))


def service_tensor(path: Path) -> np.ndarray:
    """What the API and the sidecar compute from the uploaded bytes."""
    return preprocess_bytes(path.read_bytes(), SIZE, NORMALISATION.mean, NORMALISATION.std)


@pytest.mark.parametrize("path", IMAGES, ids=lambda p: p.name)
def test_training_inputs_equal_the_service_tensor_exactly(path: Path) -> None:
    cached = load_images([record_of(path)], SIZE)
    from_cache = model_inputs(cached, NORMALISATION)[0]
    inputs, _ = XrayBatches(cached, np.zeros((1, 14)), NORMALISATION, batch_size=1, train=False)[0]
    expected = service_tensor(path)
    assert expected.shape == (SIZE, SIZE, 3) and expected.dtype == np.float32
    assert from_cache.dtype == inputs.dtype == np.float32
    np.testing.assert_array_equal(from_cache, expected)
    np.testing.assert_array_equal(inputs[0], expected)
    assert max_abs_difference(inputs[0], expected) <= TOLERANCE


def test_evaluation_epoch_arrays_keep_the_order_and_the_tensors() -> None:
    records = [record_of(path) for path in IMAGES]
    cached = load_images(records, SIZE)
    targets = np.eye(len(records), 14, dtype=np.float32)
    inputs, returned = XrayBatches(cached, targets, NORMALISATION, batch_size=3, train=False).epoch_arrays()
    np.testing.assert_array_equal(returned, targets)
    for i, path in enumerate(IMAGES):
        np.testing.assert_array_equal(inputs[i], service_tensor(path))


def _nearest_resize(pixels: np.ndarray) -> np.ndarray:
    image = Image.fromarray(pixels.astype(np.float32)).resize((SIZE, SIZE), Image.Resampling.NEAREST)
    return normalise(np.asarray(image), NORMALISATION.mean, NORMALISATION.std)


def _eight_bit_resize(pixels: np.ndarray) -> np.ndarray:
    image = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).resize(
        (SIZE, SIZE), Image.Resampling.BILINEAR
    )
    return normalise(np.asarray(image, dtype=np.float32) / 255, NORMALISATION.mean, NORMALISATION.std)


def _other_statistics(pixels: np.ndarray) -> np.ndarray:
    return normalise(resize_grey(pixels, SIZE), NORMALISATION.mean + 0.01, NORMALISATION.std)


def _resize_then_crop(pixels: np.ndarray) -> np.ndarray:
    return normalise(resize_grey(pixels, SIZE + 2)[1:-1, 1:-1], NORMALISATION.mean, NORMALISATION.std)


SKEWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "nearest-neighbour resize": _nearest_resize,
    "resize in 8 bits": _eight_bit_resize,
    "normalisation statistics off by 0.01": _other_statistics,
    "resize larger and crop": _resize_then_crop,
}


@pytest.mark.parametrize("skew", SKEWS.values(), ids=SKEWS.keys())
def test_the_equality_check_would_catch_a_skewed_path(skew: Callable[[np.ndarray], np.ndarray]) -> None:
    path = IMAGES[0]
    skewed = skew(decode_image(path.read_bytes()).pixels)
    assert skewed.shape == (SIZE, SIZE, 3)
    assert max_abs_difference(skewed, service_tensor(path)) > 1000 * TOLERANCE


def test_normalisation_is_the_mean_and_std_of_the_cached_pixels() -> None:
    cached = load_images([record_of(path) for path in IMAGES], SIZE)
    statistics = normalisation_of(cached)
    assert statistics.mean == pytest.approx(float(cached.mean()))
    assert statistics.std == pytest.approx(float(cached.std()))
    standardised = model_inputs(cached, statistics)
    assert abs(float(standardised.mean())) < 1e-4 and float(standardised.std()) == pytest.approx(
        1.0, abs=1e-4
    )


def test_load_images_of_nothing_is_an_empty_array() -> None:
    assert load_images([], SIZE).shape == (0, SIZE, SIZE)


def test_training_batches_are_augmented_shuffled_and_seeded() -> None:
    cached = load_images([record_of(path) for path in IMAGES], SIZE)
    targets = np.eye(len(IMAGES), 14, dtype=np.float32)

    def first_epoch(seed: int) -> tuple[np.ndarray, np.ndarray]:
        return XrayBatches(cached, targets, NORMALISATION, batch_size=2, train=True, seed=seed).epoch_arrays()

    inputs, returned = first_epoch(5)
    again, _ = first_epoch(5)
    np.testing.assert_array_equal(inputs, again)  # deterministic per seed
    assert sorted(map(tuple, returned)) == sorted(map(tuple, targets))  # shuffled, not mixed (mixup off)
    plain = model_inputs(cached, NORMALISATION)
    order = [int(np.argmax(row)) for row in returned]
    assert max_abs_difference(inputs, plain[order]) > 0.01  # augmented


def test_max_steps_limits_the_epoch() -> None:
    cached = np.zeros((10, SIZE, SIZE), dtype=np.float32)
    batches = XrayBatches(cached, np.zeros((10, 14)), NORMALISATION, batch_size=3, max_steps=2)
    assert len(batches) == 2
    assert len(XrayBatches(cached, np.zeros((10, 14)), NORMALISATION, batch_size=3)) == 4


def test_films_smaller_than_the_input_are_refused_for_held_out_splits(
    fixture_images: list[Path], tmp_path: Path
) -> None:
    from training.dataset import SmallFilmError, check_film_sizes

    thumbnail = tmp_path / "thumb.png"
    with Image.open(fixture_images[0]) as film:
        film.resize((64, 64)).save(thumbnail)
    films = [Record(path.name, path, "1", np.zeros(14, np.float32)) for path in fixture_images]
    check_film_sizes(films, 1024)  # the NIH films are 1024 px
    small = Record("thumb.png", thumbnail, "1", np.zeros(14, np.float32), dataset="thumbs")
    check_film_sizes([small], 64)
    with pytest.raises(SmallFilmError, match=r"thumb\.png is 64x64, smaller than the 128 px input.*thumbs"):
        check_film_sizes([*films, small], 128)
