"""The bare references the service is judged against: decode + preprocess + onnxruntime in this
process (b), and the same loop in one single-threaded process per core, the machine's roof (e)."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


class BareOnnx:
    """Bare onnxruntime: the shared decode and preprocessing and one session, nothing else.

    threads=0 is onnxruntime's default session (a thread per physical core, spinning), what a
    first in-process loop would write; the roof's workers use threads=1 without spinning."""

    def __init__(self, model_dir: Path, onnx_dir: Path, threads: int = 0, int8: bool = False) -> None:
        import onnxruntime as ort

        from cxr.model_card import load_model_card
        from cxr.onnx_manifest import load_manifest

        self.card = load_model_card(model_dir)
        manifest = load_manifest(onnx_dir)
        name = manifest.onnx_file
        if int8:
            if manifest.quantization is None:
                raise FileNotFoundError(f"{onnx_dir} has no int8 model")
            name = manifest.quantization.file
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(onnx_dir / name), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def score(self, data: bytes) -> Any:
        from cxr.preprocessing import preprocess_bytes

        normalisation = self.card.normalisation
        tensor = preprocess_bytes(data, self.card.input_size, normalisation.mean, normalisation.std)
        return self.session.run(["probabilities"], {"input": tensor[None]})[0]


def machine_speed_ms(model_dir: Path, onnx_dir: Path, image: bytes, repeats: int = 7) -> float:
    """Median ms per image of one single-threaded bare loop: the same figure at the start and the
    end of a run shows whether the machine itself (a shared host) changed speed in between, which
    the load average of this machine does not show."""
    bare = BareOnnx(model_dir, onnx_dir, threads=1)
    return statistics.median(timed_ms(lambda: bare.score(image), repeats, warm_up=2))


def timed_ms(call: Callable[[], object], repeats: int, warm_up: int = 3) -> list[float]:
    """Milliseconds of each of `repeats` calls, after `warm_up` untimed ones."""
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


# --- The roof: one single-threaded bare loop per core ------------------------------------------------

_worker: BareOnnx | None = None
_image: bytes = b""


def _load_worker(model_dir: Path, onnx_dir: Path, image: bytes, int8: bool) -> None:
    global _worker, _image
    _worker, _image = BareOnnx(model_dir, onnx_dir, threads=1, int8=int8), image
    for _ in range(3):
        _worker.score(_image)


def _loop_until(start_at: float, seconds: float) -> int:
    """Images scored between start_at and start_at + seconds (wall clock, shared by all workers)."""
    assert _worker is not None
    while time.time() < start_at:
        time.sleep(0.001)
    deadline, count = start_at + seconds, 0
    while time.time() < deadline:
        _worker.score(_image)
        count += 1
    return count


class Roof:
    """`processes` worker processes (default: one per usable core), each a bare single-threaded
    decode + preprocess + onnxruntime loop (on model.int8.onnx with `int8`) on the same image;
    `images_per_second` runs them all at once for a while. Start once, measure in each round,
    close at the end."""

    def __init__(
        self, model_dir: Path, onnx_dir: Path, image: bytes, processes: int = 0, int8: bool = False
    ) -> None:
        self.processes = processes or len(os.sched_getaffinity(0))
        self._pool = ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load_worker,
            initargs=(model_dir, onnx_dir, image, int8),
        )
        # Start every worker now (each runs its initializer once), not inside the first round.
        list(self._pool.map(_sleep, [0.2] * self.processes))

    def images_per_second(self, seconds: float) -> float:
        start_at = time.time() + 0.5
        futures = [self._pool.submit(_loop_until, start_at, seconds) for _ in range(self.processes)]
        return sum(future.result() for future in futures) / seconds

    def close(self) -> None:
        self._pool.shutdown()

    def __enter__(self) -> Roof:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sleep(seconds: float) -> None:
    time.sleep(seconds)
