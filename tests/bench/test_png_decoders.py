"""The decoder comparison times Pillow on real radiographs and checks every decoder's pixels."""

from pathlib import Path

import numpy as np
import pytest

from bench.png_decoders import available_decoders, main, pillow


def test_every_available_decoder_gives_pillows_pixels(fixture_images: list[Path]) -> None:
    data = fixture_images[0].read_bytes()
    for name, decode in available_decoders().items():
        assert np.array_equal(decode(data), pillow(data)), name


def test_the_comparison_prints_pillow(fixture_images: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--images", str(fixture_images[0].parent), "--count", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("2 PNGs from")
    assert lines[1].startswith("pillow") and "(1.00x Pillow)" in lines[1] and lines[1].endswith("True")
