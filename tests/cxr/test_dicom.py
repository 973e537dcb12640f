"""DICOM decoding: a real radiograph stored every way a modality may store it gives the model input
of the 8-bit PNG; windows and VOI LUTs follow PS3.3 C.11.2; bad files raise their `ImageError`;
no header value leaks into errors, warnings or logs."""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import (
    dataset_bytes,
    identifying_strings_in,
    make_dataset,
    make_dicom,
    pillow_jpeg2000,
    set_encapsulated_frame,
)
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from cxr.imaging import (
    CorruptImageError,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
)
from cxr.preprocessing import preprocess_pixels

SIZE, MEAN, STD = 128, 0.5, 0.25
LOSSLESS = 0.002  # max |difference| of model inputs in normalised units: 12-bit rounding is 0.0005


@pytest.fixture(scope="module")
def grey(fixture_images: list[Path]) -> np.ndarray:
    """A real NIH radiograph as 8-bit stored values, 1024 x 1024."""
    with Image.open(fixture_images[0]) as image:
        return np.asarray(image.convert("L"))


def to_12_bit(grey: np.ndarray) -> np.ndarray:
    return np.round(grey * (4095 / 255)).astype(np.uint16)


def identity_window(low: float, high: float) -> tuple[float, float]:
    """(center, width) of the LINEAR window mapping [low, high] onto the whole output range."""
    return (low + high) / 2 + 0.5, high - low + 1


def encapsulated(dataset: Dataset, frame: bytes, transfer_syntax: str) -> bytes:
    set_encapsulated_frame(dataset, frame, transfer_syntax)
    return dataset_bytes(dataset)


def with_elements(dataset: Dataset, **elements: object) -> bytes:
    for keyword, value in elements.items():
        if value is None:
            del dataset[keyword]
        else:
            setattr(dataset, keyword, value)
    return dataset_bytes(dataset)


def two_frames(grey: np.ndarray) -> bytes:
    dataset = make_dataset(grey, 8)
    dataset.NumberOfFrames = 2
    dataset.PixelData = grey.tobytes() + (255 - grey).tobytes()
    return dataset_bytes(dataset)


# The radiograph stored as (bytes from the 8-bit grey array, tolerance, bits stored reported).
STORAGES: dict[str, tuple[Callable[[np.ndarray], bytes], float, int]] = {
    "mono2-8bit": (lambda g: make_dicom(g, 8), LOSSLESS, 8),
    "mono2-12bit": (lambda g: make_dicom(to_12_bit(g), 12), LOSSLESS, 12),
    "mono2-16bit": (lambda g: make_dicom(g.astype(np.uint16) * 257, 16), LOSSLESS, 16),
    "mono2-12bit-window": (
        lambda g: make_dicom(to_12_bit(g), 12, window=identity_window(0, 4095)),
        LOSSLESS,
        12,
    ),
    "mono2-12bit-rescale": (lambda g: make_dicom(to_12_bit(g), 12, rescale=(2.0, -1024.0)), LOSSLESS, 12),
    "mono2-12bit-rescale-window": (
        # The window is in rescaled units: stored [0, 4095] -> [-1024, 7166].
        lambda g: make_dicom(to_12_bit(g), 12, rescale=(2.0, -1024.0), window=identity_window(-1024, 7166)),
        LOSSLESS,
        12,
    ),
    "mono2-12bit-negative-slope-window": (
        lambda g: make_dicom(
            4095 - to_12_bit(g), 12, rescale=(-1.0, 4095.0), window=identity_window(0, 4095)
        ),
        LOSSLESS,
        12,
    ),
    "mono2-12bit-signed": (lambda g: make_dicom(to_12_bit(g).astype(np.int16) - 2048, 12), LOSSLESS, 12),
    "mono2-12bit-signed-rescale-window": (
        lambda g: make_dicom(
            to_12_bit(g).astype(np.int16) - 2048,
            12,
            rescale=(1.0, 1024.0),
            window=identity_window(-1024, 3071),
        ),
        LOSSLESS,
        12,
    ),
    "mono2-12bit-overlay-bits-set": (lambda g: make_dicom(to_12_bit(g) | 0xA000, 12), LOSSLESS, 12),
    "mono1-8bit": (lambda g: make_dicom(255 - g, 8, photometric="MONOCHROME1"), LOSSLESS, 8),
    "mono1-12bit": (lambda g: make_dicom(4095 - to_12_bit(g), 12, photometric="MONOCHROME1"), LOSSLESS, 12),
    "mono1-12bit-window": (
        lambda g: make_dicom(
            4095 - to_12_bit(g), 12, photometric="MONOCHROME1", window=identity_window(0, 4095)
        ),
        LOSSLESS,
        12,
    ),
    "implicit-vr": (lambda g: make_dicom(g, 8, transfer_syntax=ImplicitVRLittleEndian), LOSSLESS, 8),
    "deflated": (lambda g: make_dicom(g, 8, transfer_syntax=DeflatedExplicitVRLittleEndian), LOSSLESS, 8),
    "rle-12bit": (lambda g: make_dicom(to_12_bit(g), 12, transfer_syntax=RLELossless), LOSSLESS, 12),
    "jpeg2000-lossless-12bit": (
        lambda g: make_dicom(to_12_bit(g), 12, transfer_syntax=JPEG2000Lossless),
        LOSSLESS,
        12,
    ),
    "jpeg2000-lossless-mono1": (
        lambda g: make_dicom(
            4095 - to_12_bit(g), 12, photometric="MONOCHROME1", transfer_syntax=JPEG2000Lossless
        ),
        LOSSLESS,
        12,
    ),
    "jpeg2000-pillow-codestream": (
        lambda g: encapsulated(make_dataset(g, 8), pillow_jpeg2000(g), JPEG2000Lossless),
        LOSSLESS,
        8,
    ),
    "jpeg2000-lossy-window": (
        lambda g: make_dicom(
            to_12_bit(g),
            12,
            window=identity_window(0, 4095),
            transfer_syntax=JPEG2000,
            encoding={"j2k_psnr": [70]},
        ),
        0.02,
        12,
    ),
    "jpeg-ls-lossless-12bit": (
        lambda g: make_dicom(to_12_bit(g), 12, transfer_syntax=JPEGLSLossless),
        LOSSLESS,
        12,
    ),
    "jpeg-baseline-q95": (lambda g: make_dicom(g, 8, transfer_syntax=JPEGBaseline8Bit), 0.06, 8),
    "multi-frame-first-frame": (two_frames, LOSSLESS, 8),
}


@pytest.mark.parametrize("name", list(STORAGES))
def test_every_storage_gives_the_model_input_of_the_8bit_png(name: str, grey: np.ndarray) -> None:
    make, tolerance, bits_stored = STORAGES[name]
    reference = preprocess_pixels(grey.astype(np.float32) / 255, SIZE, MEAN, STD)

    decoded = decode_image(make(grey))
    difference = np.abs(preprocess_pixels(decoded.pixels, SIZE, MEAN, STD) - reference)

    assert (decoded.source_format, decoded.bit_depth, decoded.chroma) == ("dicom", bits_stored, 0.0)
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.shape == grey.shape
    assert difference.max() <= tolerance
    assert difference.mean() <= tolerance / 4


# Windows (PS3.3 C.11.2.1.2 and C.11.2.1.3) on a ramp of every 12-bit value, in the output range
# [0, 1]. x is the value after the modality LUT (rescale), c the center, w the width.
def linear(x: np.ndarray, c: float, w: float) -> np.ndarray:
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)


def linear_exact(x: np.ndarray, c: float, w: float) -> np.ndarray:
    return np.clip((x - c) / w + 0.5, 0, 1)


def sigmoid(x: np.ndarray, c: float, w: float) -> np.ndarray:
    return 1 / (1 + np.exp(-4 * (x - c) / w))


WINDOWS = {
    # name: (rescale, window, VOI LUT function, expected function)
    "linear": (None, (2048.0, 1024.0), "LINEAR", linear),
    "linear-rescaled": ((2.0, -1024.0), (1500.0, 3000.0), "LINEAR", linear),
    "linear-rescaled-fractional-slope": ((0.5, 100.0), (900.0, 600.0), "LINEAR", linear),
    "linear-exact": (None, (2048.0, 1000.0), "LINEAR_EXACT", linear_exact),
    "sigmoid": ((2.0, -1024.0), (2000.0, 1500.0), "SIGMOID", sigmoid),
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_window_maps_its_range_onto_0_to_1(name: str) -> None:
    rescale, (center, width), function, expected = WINDOWS[name]
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    slope, intercept = rescale or (1.0, 0.0)

    decoded = decode_image(
        make_dicom(ramp, 12, window=(center, width), rescale=rescale, VOILUTFunction=function)
    )

    np.testing.assert_allclose(decoded.pixels, expected(ramp * slope + intercept, center, width), atol=1e-5)
    assert decoded.pixels.min() == pytest.approx(0, abs=0.01) and decoded.pixels.max() == pytest.approx(
        1, abs=0.01
    )


def test_monochrome1_window_is_inverted_after_windowing() -> None:
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    decoded = decode_image(make_dicom(ramp, 12, photometric="MONOCHROME1", window=(2048.0, 1024.0)))
    np.testing.assert_allclose(decoded.pixels, 1 - linear(ramp, 2048.0, 1024.0), atol=1e-5)


@pytest.mark.parametrize("entry_bits", [16, 12])
def test_voi_lut_sequence_is_applied_and_scaled_by_its_entries(entry_bits: int) -> None:
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)
    curve = np.sqrt(np.arange(4096) / 4095)  # a gamma-like VOI LUT
    entries = np.round(curve * ((1 << entry_bits) - 1)).astype(int)
    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]  # vendors declare 16 bits even for 12-bit entries
    lut.LUTData = entries.tolist()
    lut["LUTData"].VR = "US"

    decoded = decode_image(make_dicom(ramp, 12, VOILUTSequence=[lut]))

    np.testing.assert_allclose(decoded.pixels, curve[ramp], atol=1 / ((1 << entry_bits) - 1))


def test_an_odd_pad_byte_and_excess_padding_are_tolerated(grey: np.ndarray) -> None:
    dataset = make_dataset(grey[:33, :33], 8)  # 1089 bytes: written with one pad byte
    assert decode_image(dataset_bytes(dataset)).pixels.shape == (33, 33)


# Bad files: (bytes maker from the grey array, error type, words the message must contain).
def small(grey: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(grey).resize((64, 64)))


def rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(small(grey)[..., np.newaxis], 3, axis=-1)


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def private_syntax(grey: np.ndarray) -> bytes:
    return encapsulated(make_dataset(small(grey), 8), b"\x00" * 64, "1.2.826.0.1.3680043.9.9999.1")


def damaged_jpeg2000(grey: np.ndarray) -> bytes:
    frame = pillow_jpeg2000(small(grey))
    return encapsulated(make_dataset(small(grey), 8), frame[:40] + bytes(len(frame) - 40), JPEG2000Lossless)


BAD_FILES: dict[str, tuple[Callable[[np.ndarray], bytes], type[ImageError], str]] = {
    "dicm-then-garbage": (
        lambda g: bytes(128) + b"DICM" + np.random.default_rng(0).bytes(2000),
        CorruptImageError,
        "DICOM",
    ),
    "dicm-then-nothing": (lambda g: bytes(128) + b"DICM", CorruptImageError, "DICOM"),
    "header-cut-short": (lambda g: make_dicom(small(g), 8)[:300], ImageError, "DICOM"),
    "no-pixel-data": (
        lambda g: with_elements(make_dataset(small(g), 8), PixelData=None),
        UnsupportedImageError,
        "no pixel data",
    ),
    "rgb": (
        lambda g: make_dicom(rgb(g), 8, photometric="RGB"),
        UnsupportedImageError,
        "RGB is not supported",
    ),
    "ybr-full": (
        lambda g: make_dicom(rgb(g), 8, photometric="YBR_FULL"),
        UnsupportedImageError,
        "YBR_FULL is not supported",
    ),
    "ybr-full-422-jpeg": (
        lambda g: encapsulated(
            make_dataset(rgb(g), 8, photometric="YBR_FULL_422"),
            jpeg(rgb(g)),
            JPEGBaseline8Bit,
        ),
        UnsupportedImageError,
        "YBR_FULL_422 is not supported",
    ),
    "photometric-missing": (
        lambda g: with_elements(make_dataset(small(g), 8), PhotometricInterpretation=None),
        UnsupportedImageError,
        "missing or unrecognised",
    ),
    "mpeg2-video": (
        lambda g: encapsulated(make_dataset(small(g), 8), b"\x00" * 64, MPEG2MPML),
        UnsupportedImageError,
        "MPEG2 Main Profile / Main Level cannot be decoded",
    ),
    "private-transfer-syntax": (
        private_syntax,
        UnsupportedImageError,
        "1.2.826.0.1.3680043.9.9999.1 cannot be decoded",
    ),
    "pixel-data-shorter-than-rows-x-columns": (
        lambda g: with_elements(make_dataset(small(g), 8), PixelData=small(g).tobytes()[:2000]),
        CorruptImageError,
        "holds 2000 bytes",
    ),
    "damaged-jpeg2000": (damaged_jpeg2000, CorruptImageError, "compressed DICOM pixel data"),
    "rows-columns-65535": (
        lambda g: with_elements(make_dataset(small(g), 8), Rows=65535, Columns=65535),
        ImageTooLargeError,
        "limit",
    ),
    "rows-zero": (
        lambda g: with_elements(make_dataset(small(g), 8), Rows=0),
        CorruptImageError,
        "image size",
    ),
    "1x2000": (lambda g: make_dicom(np.zeros((1, 2000), np.uint8), 8), ImageShapeError, "at least"),
    "32-bits-allocated": (
        lambda g: with_elements(
            make_dataset(small(g).astype(np.uint16), 16), BitsAllocated=32, BitsStored=32
        ),
        UnsupportedImageError,
        "bits allocated",
    ),
    "window-width-zero": (
        lambda g: make_dicom(small(g), 8, window=(128.0, 0.0)),
        CorruptImageError,
        "window",
    ),
    "voi-lut-function-unknown": (
        lambda g: make_dicom(small(g), 8, window=(128.0, 256.0), VOILUTFunction="CUBIC"),
        CorruptImageError,
        "window",
    ),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_raises_its_image_error(name: str, grey: np.ndarray) -> None:
    make, error_type, words = BAD_FILES[name]
    with pytest.raises(error_type) as raised:
        decode_image(make(grey))
    assert words in str(raised.value)
    assert identifying_strings_in(str(raised.value)) == []


def swallowing_transfer_syntax(data: bytes, length: int) -> bytes:
    """The file with its Transfer Syntax UID length set so that its value runs over the header."""
    at = data.index(b"\x02\x00\x10\x00UI") + 6
    return data[:at] + length.to_bytes(2, "little") + data[at + 2 :]


@pytest.mark.parametrize("length", [548, 700, 1200])
def test_damaged_header_does_not_leak_patient_data(
    length: int, grey: np.ndarray, caplog: pytest.LogCaptureFixture, recwarn: pytest.WarningsRecorder
) -> None:
    """Found by fuzzing: a damaged length made pydicom quote the patient's name in a warning."""
    data = swallowing_transfer_syntax(make_dicom(small(grey), 8), length)
    with pytest.raises(ImageError) as raised:
        decode_image(data)
    said = [str(raised.value), caplog.text, *(str(warning.message) for warning in recwarn)]
    assert identifying_strings_in("\n".join(said)) == []
