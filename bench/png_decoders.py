"""PNG decoders against Pillow on real radiographs: time per image in one thread, the speed-up of two
threads (a decoder that holds the GIL gains nothing from the API's worker threads), and whether
the pixels are identical. Pillow is the project's decoder; pyspng and OpenCV are timed only when
installed (they are not dependencies: `uv pip install pyspng opencv-python-headless` to compare).

    .venv/bin/python -m bench.png_decoders [--images ../shared/data/nih/images] [--count 40]
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from bench.procs import REPO

Decoder = Callable[[bytes], np.ndarray]


def pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image)


def available_decoders() -> dict[str, Decoder]:
    decoders: dict[str, Decoder] = {"pillow": pillow}
    try:
        import pyspng

        decoders["pyspng"] = pyspng.load
    except ImportError:
        pass
    try:
        import cv2

        cv2.setNumThreads(1)
        decoders["opencv"] = lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except ImportError:
        pass
    return decoders


def ms_per_image(decode: Decoder, files: list[bytes], threads: int) -> float:
    """Wall ms per image with `threads` threads each decoding every file."""

    def work() -> None:
        for data in files:
            decode(data)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return (time.perf_counter() - started) * 1000.0 / (threads * len(files))


@dataclass(frozen=True)
class DecoderTiming:
    decoder: str
    ms: float  # per image, one thread
    vs_pillow: float  # Pillow's ms / this decoder's
    threads_speedup: float  # one thread's ms / two threads' ms per image
    identical: bool  # every file gives Pillow's pixels


def compare(files: list[bytes], decoders: dict[str, Decoder]) -> list[DecoderTiming]:
    """Each decoder (the first is the reference Pillow) timed on `files` and checked against Pillow."""
    reference = [pillow(data) for data in files]
    timings: list[tuple[str, float, float, bool]] = []
    for name, decode in decoders.items():
        identical = all(
            np.array_equal(decode(data), pixels) for data, pixels in zip(files, reference, strict=True)
        )
        ms_per_image(decode, files[:3], 1)  # warm up
        one = min(ms_per_image(decode, files, 1) for _ in range(2))
        two = min(ms_per_image(decode, files, 2) for _ in range(2))
        timings.append((name, one, one / two, identical))
    pillow_ms = timings[0][1]
    return [DecoderTiming(name, ms, pillow_ms / ms, speedup, same) for name, ms, speedup, same in timings]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.png_decoders", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "nih" / "images")
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args(argv)
    paths = sorted(args.images.glob("*.png"))[: args.count] or sorted(
        (REPO / "tests" / "fixtures").glob("*.png")
    )
    files = [path.read_bytes() for path in paths]
    shapes = sorted({pillow(data).shape for data in files})[:3]
    print(f"{len(files)} PNGs from {paths[0].parent}, shapes {shapes}")
    decoders = available_decoders()
    for row in compare(files, decoders):
        print(
            f"{row.decoder:<8} {row.ms:6.2f} ms per image in one thread ({row.vs_pillow:.2f}x Pillow), "
            f"two threads {row.threads_speedup:.2f}x one, pixels identical to Pillow's: {row.identical}"
        )
    if len(decoders) == 1:
        print("pyspng and OpenCV are not installed: only Pillow was timed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
