"""The decoder comparison times Pillow on real radiographs and catches a decoder whose pixels differ."""

from pathlib import Path

import numpy as np
import pytest

from bench.png_decoders import available_decoders, compare, main, pillow


def off_by_one(data: bytes) -> np.ndarray:
    """A faulty decoder, injected on purpose: Pillow's pixels with one of them changed."""
    pixels = pillow(data).copy()
    pixels.flat[0] ^= 1
    return pixels


def test_a_decoder_with_other_pixels_is_reported(fixture_images: list[Path]) -> None:
    files = [path.read_bytes() for path in fixture_images[:2]]
    reference, faulty = compare(files, {"pillow": pillow, "faulty": off_by_one})
    assert (reference.decoder, reference.identical, reference.vs_pillow) == ("pillow", True, 1.0)
    assert (faulty.decoder, faulty.identical) == ("faulty", False)
    assert all(row.ms > 0 and row.threads_speedup > 0 and row.vs_pillow > 0 for row in (reference, faulty))


def test_every_installed_decoder_is_compared(
    fixture_images: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--images", str(fixture_images[0].parent), "--count", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 PNGs from")
    assert [line.split()[0] for line in lines[1 : 1 + len(available_decoders())]] == list(
        available_decoders()
    )
