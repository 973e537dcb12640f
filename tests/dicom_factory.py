"""Build DICOM Part 10 files from pixel arrays, for tests.

Every file carries the distinctive patient and institution values in `IDENTIFYING_HEADER`, so a
test can search responses and logs for them (`IDENTIFYING_STRINGS`) and prove no header value
leaks. Compressed transfer syntaxes are encoded with pydicom's own encoders (RLE natively,
JPEG 2000 with pylibjpeg-openjpeg, JPEG-LS with pyjpegls), JPEG Baseline with Pillow.
"""

import io
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

IDENTIFYING_HEADER = {
    "PatientName": "Quixotefield^Zebulonia",
    "PatientID": "PID-QZ-731904",
    "PatientBirthDate": "19230417",
    "InstitutionName": "Brackenwhistle Infirmary",
}
# What must never appear in a response or a log line (the name as DICOM writes it and as parts).
IDENTIFYING_STRINGS = (*IDENTIFYING_HEADER.values(), "Quixotefield", "Zebulonia")


def identifying_strings_in(text: str) -> list[str]:
    """The identifying header values that appear in `text` (an empty list when none leaked)."""
    return [value for value in IDENTIFYING_STRINGS if value.lower() in text.lower()]


# Pixel data stays native under these (deflate compresses the whole dataset when written).
_NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")


def make_dataset(
    pixels: np.ndarray,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    encoding: dict[str, Any] | None = None,
    **elements: Any,
) -> Dataset:
    """A dataset holding `pixels` (stored values, (rows, columns) or (rows, columns, 3)).

    `window` is (center, width) and `rescale` (slope, intercept), both in the units after the
    modality LUT as DICOM defines them. Bits allocated is 8 for uint8 pixels, else 16; int16
    pixels are signed. `encoding` passes options to pydicom's encoder (e.g. `{"j2k_psnr": [80]}`
    for lossy JPEG 2000). Extra keyword arguments set or override elements (e.g.
    `VOILUTFunction="SIGMOID"`, `VOILUTSequence=[item]`).
    """
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = generate_uid()
    dataset.Modality = "DX"
    for keyword, value in IDENTIFYING_HEADER.items():
        setattr(dataset, keyword, value)

    samples = 3 if pixels.ndim == 3 else 1
    dataset.Rows, dataset.Columns = pixels.shape[:2]
    dataset.SamplesPerPixel = samples
    if samples == 3:
        dataset.PlanarConfiguration = 0
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 8 if pixels.dtype == np.uint8 else 16
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 1 if np.issubdtype(pixels.dtype, np.signedinteger) else 0
    if window is not None:
        dataset.WindowCenter, dataset.WindowWidth = window
    if rescale is not None:
        dataset.RescaleSlope, dataset.RescaleIntercept = rescale
        dataset.RescaleType = "US"
    dataset.PixelData = np.ascontiguousarray(pixels).tobytes()
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)

    if str(transfer_syntax) == JPEGBaseline8Bit:
        set_encapsulated_frame(dataset, _pillow_jpeg(pixels), JPEGBaseline8Bit)
    elif str(transfer_syntax) not in _NATIVE:
        dataset.compress(
            transfer_syntax, np.ascontiguousarray(pixels), generate_instance_uid=False, **(encoding or {})
        )
    else:
        dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    return dataset


def make_dicom(
    pixels: np.ndarray,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    encoding: dict[str, Any] | None = None,
    **elements: Any,
) -> bytes:
    """The Part 10 file bytes of `make_dataset(...)` (same arguments)."""
    dataset = make_dataset(
        pixels, bits_stored, photometric, window, rescale, transfer_syntax, encoding, **elements
    )
    return dataset_bytes(dataset)


def dataset_bytes(dataset: Dataset) -> bytes:
    """Write a dataset as a Part 10 file (preamble, "DICM", file meta) and return the bytes."""
    buffer = io.BytesIO()
    if dataset.file_meta.TransferSyntaxUID.is_transfer_syntax:
        dataset.save_as(buffer, enforce_file_format=True)
    else:  # a private transfer syntax: pydicom needs to be told how to encode the dataset
        dataset.save_as(buffer, enforce_file_format=True, implicit_vr=False, little_endian=True)
    return buffer.getvalue()


def set_encapsulated_frame(dataset: Dataset, frame: bytes, transfer_syntax: str) -> None:
    """Replace the pixel data by one already encoded frame under `transfer_syntax`."""
    dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True


def pillow_jpeg2000(pixels: np.ndarray) -> bytes:
    """A lossless JPEG 2000 codestream of 8-bit or 16-bit greyscale pixels, encoded by Pillow."""
    buffer = io.BytesIO()  # uint8 arrays become mode "L", uint16 arrays "I;16"
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG2000", no_jp2=True)
    return buffer.getvalue()


def _pillow_jpeg(pixels: np.ndarray) -> bytes:
    if pixels.dtype != np.uint8:
        raise ValueError("JPEG Baseline holds 8-bit pixels only")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()
