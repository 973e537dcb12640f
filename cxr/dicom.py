"""DICOM pixel decoding with pydicom: modality LUT, VOI LUT or window, MONOCHROME1 inversion.

Only pixels leave this module: no header value (names, IDs, dates) is returned, logged or put
into an error message.
"""

import io

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from cxr.imaging import CorruptImageError, UnsupportedImageError, check_pixel_count

_GREYSCALE = ("MONOCHROME1", "MONOCHROME2")


def decode_dicom(data: bytes, max_pixels: int) -> tuple[np.ndarray, int]:
    """Return (greyscale float32 pixels in [0, 1], bits stored) of the first frame."""
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError, OSError) as error:
        raise CorruptImageError(f"the DICOM data cannot be parsed ({type(error).__name__})") from None
    if "PixelData" not in dataset:
        raise UnsupportedImageError("the DICOM file has no pixel data")
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric not in _GREYSCALE:
        raise UnsupportedImageError(
            f"DICOM photometric interpretation {photometric or '(missing)'} is not supported; "
            "only MONOCHROME1 and MONOCHROME2 radiographs are"
        )
    if int(dataset.get("SamplesPerPixel", 1)) != 1:
        raise UnsupportedImageError("DICOM with more than one sample per pixel is not supported")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    check_pixel_count(columns, rows, max_pixels)
    bits_stored = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 16)))
    if not 1 <= bits_stored <= 16:
        raise UnsupportedImageError(f"DICOM with {bits_stored} bits stored is not supported")

    try:
        stored = dataset.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(dataset.file_meta, "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise UnsupportedImageError(f"DICOM transfer syntax {name} cannot be decoded here") from error
    except (ValueError, TypeError, AttributeError, KeyError, OSError, EOFError) as error:
        raise CorruptImageError(f"the DICOM pixel data cannot be decoded ({type(error).__name__})") from None
    if stored.ndim == 3:  # multi-frame: the first frame is the image
        stored = stored[0]
    if stored.ndim != 2 or stored.size == 0:
        raise UnsupportedImageError("the DICOM pixel data is not a single greyscale frame")

    if int(dataset.get("PixelRepresentation", 0)) == 0 and np.issubdtype(stored.dtype, np.integer):
        # BitsStored is honoured: bits above it may hold overlays or garbage.
        stored = stored & np.asarray((1 << bits_stored) - 1, dtype=stored.dtype)

    pixels = _to_unit_range(stored, dataset, bits_stored)
    if photometric == "MONOCHROME1":  # low values are white in MONOCHROME1
        pixels = 1.0 - pixels
    return pixels.astype(np.float32), bits_stored


def _to_unit_range(stored: np.ndarray, dataset: pydicom.Dataset, bits_stored: int) -> np.ndarray:
    values = apply_modality_lut(stored, dataset).astype(np.float64)
    has_window = "WindowCenter" in dataset and "WindowWidth" in dataset
    if "VOILUTSequence" in dataset or has_window:
        values = apply_voi_lut(values, dataset, index=0).astype(np.float64)
        low, high = _voi_output_range(dataset, bits_stored)
    else:
        signed = int(dataset.get("PixelRepresentation", 0)) == 1
        stored_low = -(1 << (bits_stored - 1)) if signed else 0
        stored_high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
        ends = apply_modality_lut(np.array([stored_low, stored_high]), dataset).astype(np.float64)
        low, high = float(ends.min()), float(ends.max())
    if high <= low:
        raise CorruptImageError("the DICOM value range is empty")
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _voi_output_range(dataset: pydicom.Dataset, bits_stored: int) -> tuple[float, float]:
    """The range pydicom maps a VOI LUT or window onto."""
    if "VOILUTSequence" in dataset:
        item = dataset.VOILUTSequence[0]
        lut_bits = int(item.LUTDescriptor[2])
        return 0.0, float((1 << lut_bits) - 1)
    # Windowing maps onto the stored range (PS3.3 C.11.2.1.2), after the modality LUT if any.
    if int(dataset.get("PixelRepresentation", 0)) == 1 and "RescaleSlope" not in dataset:
        return float(-(1 << (bits_stored - 1))), float((1 << (bits_stored - 1)) - 1)
    return 0.0, float((1 << bits_stored) - 1)
