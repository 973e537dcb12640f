"""PNG and JPEG decoding: every variant of a real radiograph gives the same model input, and every
bad input is refused with the right `ImageError` subclass (and nothing else, under fuzzing)."""

import contextlib
import functools
import io
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import identifying_strings_in, make_dicom
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from cxr.imaging import (
    DEFAULT_MAX_PIXELS,
    CorruptImageError,
    DecodedImage,
    ImageError,
    ImageShapeError,
    ImageTooLargeError,
    UnsupportedImageError,
    decode_image,
    sniff_format,
)
from cxr.preprocessing import preprocess_pixels

SIZE, MEAN, STD = 128, 0.5, 0.25
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    if image_format == "PNG":
        options.setdefault("compress_level", 1)  # fast; the pixels are the same
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def model_input(data: bytes) -> np.ndarray:
    return preprocess_pixels(decode_image(data).pixels, SIZE, MEAN, STD)


@pytest.fixture(scope="module")
def radiograph(fixture_images: list[Path]) -> Image.Image:
    """A real NIH radiograph, 1024 x 1024, 8-bit grey."""
    with Image.open(fixture_images[0]) as image:
        image.load()
        assert image.mode == "L"
        return image


def small(radiograph: Image.Image) -> Image.Image:
    return radiograph.resize((64, 64), Image.Resampling.BILINEAR)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking 8-bit grey PNG whose header claims width x height (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4)  # a few rows of zeros; the rest is missing
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", rows) + png_chunk(b"IEND", b"")
    )


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """A real baseline JPEG with its frame header (SOF0) size replaced."""
    start = jpeg.index(b"\xff\xc0") + 5  # marker, length (2), precision (1), then height, width
    return jpeg[:start] + struct.pack(">HH", height, width) + jpeg[start + 4 :]


# Variants of the same radiograph, and how close their model input must be to the 8-bit PNG's
# (max |difference| in normalised units, std 0.25: 0.004 is one grey level in 255).
VARIANTS: dict[str, tuple[Callable[[Image.Image], bytes], float, str, int]] = {
    "png-8bit-grey": (lambda image: encode(image, "PNG"), 1e-6, "png", 8),
    "jpeg-quality-95": (lambda image: encode(image, "JPEG", quality=95), 0.06, "jpeg", 8),
    "png-rgb": (lambda image: encode(image.convert("RGB"), "PNG"), 1e-6, "png", 8),
    "png-rgba": (lambda image: encode(image.convert("RGBA"), "PNG"), 1e-6, "png", 8),
    "png-grey-alpha": (lambda image: encode(image.convert("LA"), "PNG"), 1e-6, "png", 8),
    "png-palette": (lambda image: encode(image.convert("P"), "PNG"), 1e-6, "png", 8),
    "png-16bit": (
        lambda image: encode(Image.fromarray(np.asarray(image).astype(np.uint16) * 257), "PNG"),
        1e-5,
        "png",
        16,
    ),
    "jpeg-rgb": (lambda image: encode(image.convert("RGB"), "JPEG", quality=95), 0.06, "jpeg", 8),
    "dicom-8bit": (lambda image: make_dicom(np.asarray(image), 8), 1e-6, "dicom", 8),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_gives_the_model_input_of_the_8bit_png(name: str, radiograph: Image.Image) -> None:
    make, tolerance, source_format, bit_depth = VARIANTS[name]
    data = make(radiograph)
    reference = model_input(encode(radiograph, "PNG"))

    decoded = decode_image(data)
    difference = np.abs(preprocess_pixels(decoded.pixels, SIZE, MEAN, STD) - reference)

    assert (decoded.source_format, decoded.bit_depth) == (source_format, bit_depth)
    assert decoded.pixels.shape == (1024, 1024)
    assert decoded.chroma < 0.002  # grey in any container is still grey
    assert difference.max() <= tolerance
    assert difference.mean() <= tolerance / 4


def test_decoded_pixels_are_float32_in_unit_range(fixture_images: list[Path]) -> None:
    for path in fixture_images:
        decoded = decode_image(path.read_bytes())
        assert decoded.pixels.dtype == np.float32
        assert decoded.pixels.ndim == 2
        assert 0.0 <= decoded.pixels.min() < decoded.pixels.max() <= 1.0


@pytest.mark.parametrize("mode", ["L", "I;16", "RGB", "P"])
def test_decoded_pixels_are_pillows_values_over_full_scale(mode: str, fixture_images: list[Path]) -> None:
    """The one-pass conversion gives exactly Pillow's pixels divided by 255 (65535 for 16 bits)."""
    for path in fixture_images:
        grey = Image.open(path)
        image = (
            grey.convert(mode)
            if mode != "I;16"
            else Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
        )
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        full_scale = 65535.0 if mode == "I;16" else 255.0
        expected = np.asarray(Image.open(buffer).convert("L") if mode != "I;16" else Image.open(buffer))
        np.testing.assert_array_equal(
            decode_image(buffer.getvalue()).pixels, expected.astype(np.float32) / np.float32(full_scale)
        )


def test_colour_is_measured_before_conversion_to_grey(radiograph: Image.Image) -> None:
    grey = np.asarray(radiograph, dtype=np.float32)
    tinted = np.stack([grey, grey * 0.6, grey * 0.3], axis=-1).astype(np.uint8)  # sepia-like
    decoded = decode_image(encode(Image.fromarray(tinted), "PNG"))
    assert decoded.chroma > 0.05
    assert decoded.pixels.shape == grey.shape


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"\xff\xd8\xff\xe0....", "jpeg"),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", "dicom"),
    ],
)
def test_sniff_format_reads_magic_bytes(data: bytes, expected: str) -> None:
    assert sniff_format(data) == expected


# Bad inputs: (bytes maker, error type, words the message must contain).
BAD_INPUTS: dict[str, tuple[Callable[[Image.Image], bytes], type[ImageError], str]] = {
    "empty": (lambda image: b"", UnsupportedImageError, "empty"),
    "text-named-png": (
        lambda image: b"not an image, despite scan.png\n" * 4,
        UnsupportedImageError,
        "not a PNG",
    ),
    "random-bytes": (
        lambda image: np.random.default_rng(0).bytes(4096),
        UnsupportedImageError,
        "not a PNG, JPEG or DICOM",
    ),
    "gif": (lambda image: encode(small(image), "GIF"), UnsupportedImageError, "GIF"),
    "tiff": (lambda image: encode(small(image), "TIFF"), UnsupportedImageError, "TIFF"),
    "tiff-big-endian": (lambda image: b"MM\x00*" + b"\x00" * 64, UnsupportedImageError, "TIFF"),
    "webp": (lambda image: encode(small(image), "WEBP"), UnsupportedImageError, "WebP"),
    "bmp": (lambda image: encode(small(image), "BMP"), UnsupportedImageError, "BMP"),
    "pdf": (lambda image: encode(small(image).convert("RGB"), "PDF"), UnsupportedImageError, "PDF"),
    "jpeg-2000-file": (lambda image: encode(small(image), "JPEG2000"), UnsupportedImageError, "not a PNG"),
    "png-truncated": (lambda image: encode(image, "PNG")[:20_000], CorruptImageError, "PNG"),
    "png-header-only": (lambda image: encode(image, "PNG")[:33], CorruptImageError, "PNG"),
    "png-magic-only": (lambda image: b"\x89PNG\r\n\x1a\n", CorruptImageError, "PNG"),
    "jpeg-truncated": (lambda image: encode(image, "JPEG", quality=95)[:20_000], CorruptImageError, "JPEG"),
    "jpeg-magic-then-garbage": (
        lambda image: b"\xff\xd8\xff" + np.random.default_rng(1).bytes(4096),
        CorruptImageError,
        "JPEG",
    ),
    "png-bomb-40000x40000": (lambda image: png_claiming(40_000, 40_000), ImageTooLargeError, "limit"),
    "jpeg-bomb-65000x65000": (
        lambda image: jpeg_claiming(encode(small(image), "JPEG"), 65_000, 65_000),
        ImageTooLargeError,
        "limit",
    ),
    "png-1x1": (lambda image: encode(image.resize((1, 1)), "PNG"), ImageShapeError, "at least"),
    "png-1x2000": (lambda image: encode(image.resize((1, 2000)), "PNG"), ImageShapeError, "at least"),
    "png-2000x40": (lambda image: encode(image.resize((2000, 40)), "PNG"), ImageShapeError, "aspect ratio"),
    "png-31x31": (lambda image: encode(image.resize((31, 31)), "PNG"), ImageShapeError, "at least"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_its_image_error(name: str, radiograph: Image.Image) -> None:
    make, error_type, words = BAD_INPUTS[name]
    with pytest.raises(error_type) as raised:
        decode_image(make(radiograph))
    assert words in str(raised.value)


@pytest.mark.parametrize("bomb", [png_claiming(40_000, 40_000), png_claiming(9_000, 9_000)])
def test_bomb_is_refused_from_the_header_without_decoding(
    bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(ImageTooLargeError, match=r"pixels; the limit is"):
        decode_image(bomb)


def test_pixel_limit_is_a_parameter(fixture_images: list[Path]) -> None:
    data = fixture_images[0].read_bytes()
    with pytest.raises(ImageTooLargeError, match="1024x1024"):
        decode_image(data, max_pixels=1024 * 1024 - 1)
    assert decode_image(data, max_pixels=1024 * 1024).pixels.shape == (1024, 1024)
    assert DEFAULT_MAX_PIXELS >= 4096 * 4096  # the largest radiograph detectors


# Property-based fuzzing: whatever the bytes, a valid image or an ImageError, never anything else.


@contextlib.contextmanager
def diagnostics() -> Iterator[list[str]]:
    """Collect the warnings and log records emitted inside the block, as text."""
    handler = logging.Handler(logging.DEBUG)
    messages: list[str] = []
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(warning.message) for warning in caught)
    finally:
        logging.getLogger().removeHandler(handler)


def check_decodes_or_refuses(data: bytes) -> None:
    """A valid image or an ImageError; warnings (damaged DICOM headers make pydicom warn) are
    allowed but must not quote the patient header, nor may the error."""
    with diagnostics() as messages:
        try:
            decoded = decode_image(data)
        except ImageError as error:
            assert str(error)
            messages.append(str(error))
            decoded = None
    assert identifying_strings_in("\n".join(messages)) == []
    if decoded is None:
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.pixels.ndim == 2 and decoded.pixels.dtype == np.float32
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
    assert 0.0 <= decoded.chroma <= 1.0


@functools.cache
def seed_files() -> list[bytes]:
    """Small real files of every supported format, to be mutated (not a fixture: hypothesis would
    print all their bytes with each example)."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    with Image.open(FIXTURES / "00000001_000.png") as radiograph:
        image = small(radiograph)
    pixels = np.asarray(image)
    twelve_bit = np.round(pixels * (4095 / 255)).astype(np.uint16)
    return [
        encode(image, "PNG"),
        encode(image, "JPEG", quality=90),
        encode(image.convert("RGB"), "PNG"),
        encode(Image.fromarray(pixels.astype(np.uint16) * 257), "PNG"),
        make_dicom(pixels, 8),
        make_dicom(twelve_bit, 12, window=(2048, 4096), rescale=(1.0, -1024.0)),
        make_dicom(4095 - twelve_bit, 12, photometric="MONOCHROME1"),
        make_dicom(twelve_bit, 12, transfer_syntax=JPEG2000Lossless),
        make_dicom(twelve_bit, 12, transfer_syntax=RLELossless),
    ]


def mutate(data: bytes, edits: list[tuple[str, int, bytes]]) -> bytes:
    for kind, position, chunk in edits:
        at = position % (len(data) + 1)
        if kind == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ (chunk[0] if chunk else 0xFF)]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + chunk + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(chunk) + 1 :]
        elif kind == "truncate":
            data = data[:at]
    return data


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate"]),
        st.integers(min_value=0, max_value=1 << 20),
        st.binary(min_size=0, max_size=8),
    ),
    min_size=1,
    max_size=4,
)
# Positions are often in the first bytes, where headers are, and as often anywhere.
HEADER_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete"]),
        st.integers(min_value=0, max_value=1024),
        st.binary(min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=3,
)
# CXR_FUZZ_EXAMPLES=20000 fuzzes deeper, locally.
FUZZ = settings(max_examples=int(os.environ.get("CXR_FUZZ_EXAMPLES", "200")), deadline=None)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    check_decodes_or_refuses(data)


@FUZZ
@given(
    magic=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x00" * 128 + b"DICM"]), tail=st.binary()
)
def test_fuzz_magic_then_arbitrary_bytes(magic: bytes, tail: bytes) -> None:
    check_decodes_or_refuses(magic + tail)


@FUZZ
@given(index=st.integers(min_value=0, max_value=8), edits=st.one_of(EDITS, HEADER_EDITS))
def test_fuzz_mutated_real_files(index: int, edits: list[tuple[str, int, bytes]]) -> None:
    check_decodes_or_refuses(mutate(seed_files()[index], edits))
