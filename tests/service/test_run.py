"""`python -m service.run` (make run): both children start and find each other, Ctrl-C stops both
(exit 0), and a child that dies takes the other down with it (exit non-zero)."""

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from processes import (
    LOOPBACK,
    ServiceProcess,
    child_pids,
    command_line,
    free_port,
    running_module,
    wait_until_gone,
    wait_until_ready,
)

from service.run import child_environment

EXIT_SECONDS = 60.0


@dataclass
class Launch:
    run: ServiceProcess
    api_url: str
    sidecar_url: str

    def children(self) -> dict[str, int]:
        """'sidecar' / 'api' -> pid of run's child process."""
        pids = {}
        for pid in child_pids(self.run.pid):
            for name, module in (("sidecar", "service.sidecar"), ("api", "service.api")):
                if f"-m {module}" in command_line(pid):
                    pids[name] = pid
        assert set(pids) == {"sidecar", "api"}, f"children {pids}:\n{self.run.log_tail()}"
        return pids


@pytest.fixture
def launch(model_dir: Path, onnx_dir: Path, tmp_path: Path) -> Iterator[Launch]:
    api_port, gradcam_port = free_port(), free_port()
    env = {
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "API_PORT": str(api_port),
        "GRADCAM_HOST": LOOPBACK,
        "GRADCAM_PORT": str(gradcam_port),
        "API_KEYS": "",
        "LOG_FORMAT": "text",
    }
    with running_module("service.run", env, tmp_path) as run:
        yield Launch(run, f"http://{LOOPBACK}:{api_port}", f"http://{LOOPBACK}:{gradcam_port}")


def test_child_environment_points_the_api_at_the_sidecar() -> None:
    assert child_environment({"GRADCAM_PORT": "9001"})["GRADCAM_URL"] == "http://127.0.0.1:9001"
    assert child_environment({"GRADCAM_HOST": "0.0.0.0"})["GRADCAM_URL"] == "http://127.0.0.1:8001"
    assert child_environment({"MODEL_DIR": "m"})["MODEL_DIR"] == "m"


@pytest.mark.slow
def test_ctrl_c_stops_both_children(launch: Launch) -> None:
    wait_until_ready(f"{launch.sidecar_url}/readyz", launch.run)
    wait_until_ready(f"{launch.api_url}/readyz", launch.run)
    readiness = httpx.get(f"{launch.api_url}/readyz", timeout=10).json()
    assert readiness["state"] == "ready", readiness  # the API found the sidecar through GRADCAM_URL
    assert readiness["sidecar"]["same_model"] is True
    children = launch.children()

    launch.run.process.send_signal(signal.SIGINT)

    assert launch.run.process.wait(EXIT_SECONDS) == 0, launch.run.log_tail()
    assert wait_until_gone(list(children.values())) == []


@pytest.mark.slow
def test_dead_sidecar_stops_the_api(launch: Launch) -> None:
    wait_until_ready(f"{launch.sidecar_url}/healthz", launch.run)  # up, the model may still be loading
    wait_until_ready(f"{launch.api_url}/healthz", launch.run)
    children = launch.children()

    os.kill(children["sidecar"], signal.SIGKILL)

    assert launch.run.process.wait(EXIT_SECONDS) != 0, launch.run.log_tail()
    assert wait_until_gone([children["api"]]) == []
    assert "sidecar exited" in launch.run.log_tail(200)
