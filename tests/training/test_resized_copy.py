"""Resized dataset copies: what a training machine reads equals the shared preprocessing's output."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.preprocessing import load_grey
from training.resized_copy import main


def test_a_resized_copy_trains_on_what_the_service_computes(
    fixture_images: list[Path], tmp_path: Path
) -> None:
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    (source / "reference").mkdir()
    for film in fixture_images[:2]:
        shutil.copy(film, source / "images" / film.name)
    Image.new("L", (64, 64), 90).save(source / "images" / "thumb.png")
    (source / "images_labels.csv").write_text("Image,PatientId\n")
    (source / "reference" / "probabilities.csv").write_text("Image Index\n")

    target = tmp_path / "copy"
    assert main([str(source), str(target), "--size", "96"]) == 0
    assert (target / "images_labels.csv").read_text() == "Image,PatientId\n"
    assert (target / "reference" / "probabilities.csv").is_file()
    for film in fixture_images[:2]:
        copied = target / "images" / film.name
        with Image.open(copied) as image:
            assert image.size == (96, 96) and image.mode == "L"
        # Read back through the same path at the same size: the original's values to 8-bit rounding.
        error = np.abs(load_grey(str(copied), 96) - load_grey(str(film), 96)).max()
        assert error <= 0.5 / 255 + 1e-6
    assert (target / "images" / "thumb.png").read_bytes() == (source / "images" / "thumb.png").read_bytes()
