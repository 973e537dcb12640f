"""DICOM pixel decoding with pydicom: modality LUT, VOI LUT or window, MONOCHROME1 inversion.

Only pixels and the Study and SOP Instance UIDs (checked to be UIDs: digits and dots) leave this
module: no other header value (names, IDs, dates) is returned, logged or put into an error
message. pydicom parses elements lazily, so only the group 0028 elements and the two UIDs read
here are converted, and an error names the exception type, never pydicom's message (which may
quote a value). Every failure is an `ImageError`: pydicom may raise almost anything on a damaged
file.
"""

import io
import re
import struct
import zlib

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, pixel_array
from pydicom.uid import UID

from cxr.imaging import (
    CorruptImageError,
    DicomInstance,
    ImageError,
    UnsupportedImageError,
    check_pixel_count,
    check_shape,
)

# pydicom validates each element value it converts and, by default, warns and logs an invalid
# one with its value: in a damaged file, an element whose length swallowed the next ones quotes
# the patient's name and ID. Only group 0028 is used here and checked below, so values are not
# validated on reading (a process-wide pydicom setting; the service reads DICOM only here).
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = (
    "RGB",
    "PALETTE COLOR",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
    "ARGB",
    "CMYK",
)
_UID = re.compile(r"[0-9.]{1,64}")
# A UID as PS3.5 9.1 defines it: numeric components without leading zeros, separated by dots.
_STRICT_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+")
# What pydicom raises on malformed files: it parses lazily, so any element access may raise.
_MALFORMED = (
    InvalidDicomError,
    BytesLengthException,
    NotImplementedError,  # an unknown VR
    RuntimeError,  # RecursionError in nested sequences
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    OverflowError,
    struct.error,
    zlib.error,  # Deflated Explicit VR Little Endian
    OSError,
    EOFError,
)


def decode_dicom(data: bytes, max_pixels: int) -> tuple[np.ndarray, int, DicomInstance]:
    """Return (greyscale float32 pixels in [0, 1], bits stored, UIDs) of the first frame."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        photometric, bits_stored = _check_header(dataset, max_pixels)
        stored = _first_frame(dataset, bits_stored)
        with np.errstate(all="ignore"):  # absurd slopes overflow to inf; clipped below
            pixels = _to_unit_range(stored, dataset, bits_stored)
        instance = DicomInstance(_uid(dataset, "StudyInstanceUID"), _uid(dataset, "SOPInstanceUID"))
    except ImageError:
        raise
    except _MALFORMED as error:
        # The type only: pydicom's messages may quote header values.
        raise CorruptImageError(f"the DICOM data cannot be decoded ({type(error).__name__})") from None
    if photometric == "MONOCHROME1":  # low values are white in MONOCHROME1
        pixels = 1.0 - pixels
    return pixels.astype(np.float32), bits_stored, instance


def _uid(dataset: pydicom.Dataset, keyword: str) -> str | None:
    """The element's value when it is a well-formed UID, else None (a damaged element that
    swallowed its neighbours could hold other header values: those never pass the check)."""
    try:
        value = str(dataset.get(keyword, "") or "").strip().rstrip("\0")
    except _MALFORMED:
        return None
    return value if len(value) <= 64 and _STRICT_UID.fullmatch(value) else None


def _check_header(dataset: pydicom.Dataset, max_pixels: int) -> tuple[str, int]:
    """Refuse what is not one greyscale image of a sane size; return (photometric, bits stored)."""
    if "TransferSyntaxUID" not in dataset.file_meta:
        raise CorruptImageError("the DICOM file meta information is missing or damaged")
    if "PixelData" not in dataset:
        raise UnsupportedImageError("the DICOM file has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
    if photometric not in _GREYSCALE:
        # Named only when it is a defined term: a damaged element could hold other header values.
        named = photometric if photometric in _COLOUR else "(missing or unrecognised)"
        raise UnsupportedImageError(
            f"DICOM photometric interpretation {named} is not supported; "
            "only MONOCHROME1 and MONOCHROME2 radiographs are"
        )
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise UnsupportedImageError("DICOM with more than one sample per pixel is not supported")
    rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    if rows == 0 or columns == 0:
        raise CorruptImageError("the DICOM header gives no image size (Rows, Columns)")
    check_pixel_count(columns, rows, max_pixels)
    check_shape((rows, columns))
    bits_allocated = int(dataset.get("BitsAllocated") or 0)
    bits_stored = int(dataset.get("BitsStored") or bits_allocated)
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise UnsupportedImageError(
            f"DICOM with {bits_stored} of {bits_allocated} bits allocated is not supported; "
            "8 or 16 bits allocated are"
        )
    syntax = UID(dataset.file_meta.TransferSyntaxUID)
    if syntax.is_transfer_syntax and not syntax.is_compressed:  # native: check the first frame
        needed = rows * columns * bits_allocated // 8
        if len(dataset.PixelData) < needed:
            raise CorruptImageError(
                f"the DICOM pixel data holds {len(dataset.PixelData)} bytes; "
                f"{rows} x {columns} pixels of {bits_allocated} bits need {needed}"
            )
    return photometric, bits_stored


def _first_frame(dataset: pydicom.Dataset, bits_stored: int) -> np.ndarray:
    """Decode only the first frame, the image of a radiograph (later frames are not read)."""
    try:
        stored = pixel_array(dataset, index=0)
    except NotImplementedError:  # no decoder for the transfer syntax
        syntax = UID(dataset.file_meta.get("TransferSyntaxUID", ""))
        named = syntax.name if syntax.is_transfer_syntax else syntax if _UID.fullmatch(syntax) else ""
        raise UnsupportedImageError(
            f"DICOM transfer syntax {named or '(unrecognised)'} cannot be decoded here"
        ) from None
    except RuntimeError:  # every available decoder failed: the compressed data is damaged
        raise CorruptImageError("the compressed DICOM pixel data cannot be decoded") from None
    if stored.ndim != 2 or stored.size == 0:
        raise UnsupportedImageError("the DICOM pixel data is not a single greyscale frame")
    if int(dataset.get("PixelRepresentation", 0)) == 0 and np.issubdtype(stored.dtype, np.integer):
        # BitsStored is honoured: bits above it may hold overlays or garbage.
        stored = stored & np.asarray((1 << bits_stored) - 1, dtype=stored.dtype)
    return stored


def _to_unit_range(stored: np.ndarray, dataset: pydicom.Dataset, bits_stored: int) -> np.ndarray:
    """Modality LUT, then the VOI LUT or window if any, scaled so the output range is [0, 1]."""
    values = apply_modality_lut(stored, dataset)
    if dataset.get("VOILUTSequence"):
        values, (low, high) = _apply_voi_lut_sequence(values, dataset)
    elif dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
        # pydicom maps the window onto the modality output range of the stored bits (PS3.3
        # C.11.2.1.2): [0, 2^bits - 1] when unsigned, the signed range when signed, the LUT's
        # range with a modality LUT, each rescaled by slope/intercept when present. Rather than
        # repeat those rules, ask pydicom where -inf and +inf go: the two ends of its output.
        try:
            values = apply_windowing(values, dataset, index=0)
            low, high = apply_windowing(np.array([-np.inf, np.inf]), dataset, index=0)
        except ValueError:
            raise CorruptImageError("the DICOM window (center, width, function) is invalid") from None
    else:
        signed = int(dataset.get("PixelRepresentation", 0)) == 1
        stored_low = -(1 << (bits_stored - 1)) if signed else 0
        stored_high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
        ends = apply_modality_lut(np.array([stored_low, stored_high]), dataset).astype(np.float64)
        low, high = float(ends.min()), float(ends.max())
    values = np.asarray(values, dtype=np.float64)
    if not (np.isfinite(low) and np.isfinite(high)) or high == low:
        raise CorruptImageError("the DICOM value range is empty or not finite")
    # (high < low happens with a negative rescale slope; dividing by (high - low) keeps the order.)
    return np.clip(np.nan_to_num((values - low) / (high - low)), 0.0, 1.0)


def _apply_voi_lut_sequence(
    values: np.ndarray, dataset: pydicom.Dataset
) -> tuple[np.ndarray, tuple[float, float]]:
    """Apply the first VOI LUT; its output range is that of its entries.

    The LUT Descriptor's bit depth would be the nominal range, but vendors often declare 16 bits
    for 12-bit entries, which would leave the image nearly black.
    """
    if not np.issubdtype(values.dtype, np.integer):  # after a rescale: LUT inputs are integers
        values = np.rint(values).astype(np.int64)
    mapped = apply_voi(values, dataset, index=0)
    entry_count, first_mapped = dataset.VOILUTSequence[0].LUTDescriptor[:2]
    every_input = np.arange(first_mapped, first_mapped + (entry_count or 1 << 16))
    entries = apply_voi(every_input, dataset, index=0)
    return mapped, (float(entries.min()), float(entries.max()))
