"""`python -m service.api` as a real process: refuses to start on a bad model or configuration,
serves with the settings, refuses an oversized body before it arrives, logs JSON lines without
keys, binds loopback without keys, exits 0 on SIGTERM."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import (
    LOOPBACK,
    REPO,
    ServiceProcess,
    free_port,
    running_module,
    stop_process,
    wait_until_ready,
)

from cxr.model_card import MODEL_CARD_FILE

pytestmark = pytest.mark.slow

API_KEY = "process-test-key-5d1e8b"
START_SECONDS = 180.0
SETTING_VARIABLES = (
    "API_",
    "GRADCAM_",
    "MODEL_DIR",
    "ONNX_DIR",
    "MAX_",
    "ORT_",
    "OOD_",
    "CORS_",
    "LOG_",
    "HEATMAP_",
    "REQUEST_",
)


def clean_environ(**env: str) -> dict[str, str]:
    """os.environ without any of the API's variables, plus `env`."""
    base = {key: value for key, value in os.environ.items() if not key.startswith(SETTING_VARIABLES)}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


def assert_graceful_stop(process: ServiceProcess) -> None:
    """SIGTERM: uvicorn shuts down (lifespan included), then re-raises the signal."""
    assert stop_process(process.process) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in process.log_tail(20)


def run_to_exit(env: dict[str, str], timeout: float = START_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.api"],
        cwd=REPO,
        env=clean_environ(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_refuses_to_start_on_an_export_of_other_weights(
    model_dir: Path, onnx_dir: Path, tmp_path: Path
) -> None:
    card = json.loads((model_dir / MODEL_CARD_FILE).read_text())
    card["sha256"] = "0" * 64
    (tmp_path / MODEL_CARD_FILE).write_text(json.dumps(card))
    started = time.monotonic()
    result = run_to_exit(
        {"MODEL_DIR": str(tmp_path), "ONNX_DIR": str(onnx_dir), "API_PORT": str(free_port())}
    )
    assert result.returncode == 1, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("cxr-api: model not loaded: ")
    assert f"{onnx_dir}/manifest.json" in last_line and "the export was made from weights" in last_line
    assert time.monotonic() - started < START_SECONDS


def test_refuses_to_start_without_an_export(model_dir: Path, tmp_path: Path) -> None:
    result = run_to_exit(
        {"MODEL_DIR": str(model_dir), "ONNX_DIR": str(tmp_path), "API_PORT": str(free_port())}
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"cxr-api: model not loaded: {tmp_path}/manifest.json")
    )


def test_bad_configuration_exits_2_naming_variables_not_values() -> None:
    result = run_to_exit({"API_PORT": "eighty", "API_KEYS": "changeme", "OOD_MODE": "sometimes"}, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert {line.split(": ")[2] for line in lines} == {"API_PORT", "API_KEYS", "OOD_MODE"}
    assert "changeme" not in result.stderr


@pytest.fixture(scope="module")
def api(
    model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A real API process with a key; (base URL, log file)."""
    port = free_port()
    env = clean_environ(
        MODEL_DIR=str(model_dir),
        ONNX_DIR=str(onnx_dir),
        API_HOST=LOOPBACK,
        API_PORT=str(port),
        API_KEYS=API_KEY,
        GRADCAM_URL=f"http://{LOOPBACK}:{free_port()}",
        LOG_FORMAT="json",
        MAX_BODY_BYTES="2000000",
    )
    base_url = f"http://{LOOPBACK}:{port}"
    with running_module("service.api", env, tmp_path_factory.mktemp("api-logs"), base_url) as process:
        wait_until_ready(f"{base_url}/readyz", process, timeout=START_SECONDS)
        yield base_url, process.log_path
        assert_graceful_stop(process)


def test_serves_predictions_with_the_key(api: tuple[str, Path], radiograph_png: bytes) -> None:
    base_url, log_path = api
    files = {"file": ("chest.png", radiograph_png, "image/png")}
    answer = httpx.post(
        f"{base_url}/v1/predict?heatmaps=top:2",
        files=files,
        timeout=120,
        headers={"X-API-Key": API_KEY, "X-Request-ID": "process-test-1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["request_id"] == "process-test-1" == answer.headers["x-request-id"]
    assert len(body["probabilities"]) == 14 and body["heatmap_engine"] == "cam"
    assert httpx.post(f"{base_url}/v1/predict", files=files, timeout=60).status_code == 401
    assert "server" not in answer.headers

    time.sleep(0.5)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [
        line
        for line in lines
        if line.get("logger") == "service.api.access" and line["request_id"] == "process-test-1"
    ]
    assert len(access) == 1 and access[0]["status"] == 200 and access[0]["path"] == "/v1/predict"
    assert access[0]["duration_ms"] > 0
    assert API_KEY not in log_path.read_text()


def test_oversized_body_refused_before_it_is_sent(api: tuple[str, Path]) -> None:
    host, port = api[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: api\r\nX-API-Key: "
            + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 500000000\r\n\r\n"
        )
        started = time.monotonic()
        reply = connection.recv(4096)  # no body byte was sent: the answer cannot have waited for it
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"application/problem+json" in reply and time.monotonic() - started < 10


def test_without_keys_binds_loopback_only(model_dir: Path, onnx_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = clean_environ(
        MODEL_DIR=str(model_dir),
        ONNX_DIR=str(onnx_dir),
        API_HOST="0.0.0.0",
        API_PORT=str(port),
        LOG_FORMAT="text",
    )
    with running_module("service.api", env, tmp_path) as process:
        wait_until_ready(f"http://{LOOPBACK}:{port}/healthz", process, timeout=START_SECONDS)
        log = process.log_tail(200)
        assert "authentication is off" in log and "API_HOST=0.0.0.0 ignored" in log
        assert f"Uvicorn running on http://{LOOPBACK}:{port}" in log
        assert_graceful_stop(process)


def test_no_console_script_surprises() -> None:
    script = shutil.which("cxr-api", path=str(Path(sys.executable).parent))
    assert script is not None
    assert "service.api.__main__" in Path(script).read_text()
