"""The servers a benchmark run starts (sidecar, API, naive baseline) and the load it sends them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.loadgen import LoadResult, run_load
from bench.procs import Service, free_port, start

PREDICT = "/v1/predict"


def api_environment(
    model_dir: Path, onnx_dir: Path, sidecar_url: str, settings: dict[str, str] | None = None
) -> dict[str, str]:
    return {
        "API_HOST": "127.0.0.1",
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "GRADCAM_URL": sidecar_url,
        "API_KEYS": "",
        "LOG_LEVEL": "WARNING",
        **(settings or {}),
    }


def api_settings(
    model_dir: Path, onnx_dir: Path, sidecar_url: str, settings: dict[str, str] | None = None
) -> Any:
    """The Settings an API started with the same arguments reads (defaults included)."""
    import os

    from service.api.settings import Settings

    return Settings.from_environ(
        {**os.environ, **api_environment(model_dir, onnx_dir, sidecar_url, settings)}
    )


def start_sidecar(
    model_dir: Path, log_dir: Path, timeout: float, settings: dict[str, str] | None = None
) -> Service:
    port = free_port()
    return start(
        "sidecar" + "".join(f"-{value}" for value in (settings or {}).values()),
        ["-m", "service.sidecar"],
        {
            "GRADCAM_HOST": "127.0.0.1",
            "GRADCAM_PORT": str(port),
            "MODEL_DIR": str(model_dir),
            **(settings or {}),
        },
        f"http://127.0.0.1:{port}",
        log_dir,
        ready_path="/readyz",
        timeout=timeout,
    )


def start_api(
    model_dir: Path, onnx_dir: Path, sidecar_url: str, log_dir: Path, settings: dict[str, str] | None = None
) -> Service:
    port = free_port()
    env = {**api_environment(model_dir, onnx_dir, sidecar_url, settings), "API_PORT": str(port)}
    name = "api" + "".join(f"-{value}" for value in (settings or {}).values())
    return start(name, ["-m", "service.api"], env, f"http://127.0.0.1:{port}", log_dir, ready_path="/readyz")


def start_baseline(model_dir: Path, log_dir: Path, timeout: float) -> Service:
    port = free_port()
    return start(
        "baseline",
        ["-m", "bench.baseline_app", "--model-dir", str(model_dir), "--port", str(port)],
        {},
        f"http://127.0.0.1:{port}",
        log_dir,
        timeout=timeout,
    )


def load(service: Service, image: bytes, **kwargs: Any) -> LoadResult:
    result = run_load(service.url + PREDICT, image, "image.png", **kwargs)
    if result.failures:
        print(f"  ! {service.name}: {result.failures} failed requests {result.errors}", file=sys.stderr)
    return result
