"""`python -m training.resized_copy SRC DST --size N`: a dataset folder with its films at one input size.

For training on a machine that cannot hold the full-resolution films (an accelerator reached over a
small upload): each film goes through the shared preprocessing's resize (cxr.preprocessing.load_grey)
and is written as an 8-bit PNG under the same name, so training there reads what the service computes
from the original, to within 8-bit rounding (1/510 at most). Labels, metadata and reference/ are
copied as they are. Films already at or below the size are copied unchanged: the trainer resizes them
itself, as it would the originals.
"""

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from cxr.preprocessing import load_grey


def resized_film(source: Path, size: int) -> np.ndarray:
    """The shared preprocessing's size x size greyscale, rounded to 8 bits."""
    return np.clip(np.rint(load_grey(str(source), size) * 255.0), 0, 255).astype(np.uint8)


def copy_dataset(source: Path, target: Path, size: int) -> tuple[int, int]:
    """Copy the folder; returns (films resized, films copied unchanged)."""
    if not (source / "images").is_dir():
        raise FileNotFoundError(f"{source} has no images/ folder")
    (target / "images").mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.is_file():
            shutil.copy2(entry, target / entry.name)
        elif entry.name != "images":
            shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
    resized = unchanged = 0
    for film in sorted((source / "images").iterdir()):
        with Image.open(film) as image:
            small = min(image.size) <= size
        if small:
            shutil.copy2(film, target / "images" / film.name)
            unchanged += 1
        else:
            # PNG under the same name (the label table names it); decoding goes by content, not suffix.
            Image.fromarray(resized_film(film, size)).save(target / "images" / film.name, format="PNG")
            resized += 1
    return resized, unchanged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.resized_copy", description=__doc__)
    parser.add_argument("source", type=Path, help="dataset folder (images/, images_labels.csv, ...)")
    parser.add_argument("target", type=Path)
    parser.add_argument("--size", type=int, required=True, help="the model's input size")
    args = parser.parse_args(argv)
    resized, unchanged = copy_dataset(args.source, args.target, args.size)
    print(f"{args.target}: {resized} films resized to {args.size} px, {unchanged} copied unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
