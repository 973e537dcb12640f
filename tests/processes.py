"""Run the services as real processes in tests: free ports, start, wait until ready, stop.

Import as `from processes import ...` (tests/ is on sys.path, as for dicom_factory). Output of each
process goes to a log file whose tail is put into every failure message.

    port = free_port()
    with running_module("service.sidecar", {"GRADCAM_PORT": str(port), ...}, log_dir) as sidecar:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", sidecar)

or, for the Grad-CAM sidecar of a model, `with running_sidecar(model_dir, log_dir) as sidecar:`.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SIDECAR_START_SECONDS = 600.0  # TensorFlow import, model load, tracing: 60-90 s on 2 cores, more when busy
STOP_SECONDS = 30.0


@dataclass
class ServiceProcess:
    """A child `python -m module` and where its output goes."""

    module: str
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def start_module(
    module: str, env: Mapping[str, str], log_dir: Path, base_url: str | None = None
) -> ServiceProcess:
    """`python -m module` from the repo root with os.environ + `env`, output to log_dir/<module>.log.

    The child gets its own session, so signals reach it only from the test."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{module}.{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServiceProcess(module, process, log_path, base_url)


def wait_until_ready(url: str, service: ServiceProcess, timeout: float = SIDECAR_START_SECONDS) -> float:
    """Poll `url` until it answers 200; seconds waited. Fails early if the process exits."""
    started = time.monotonic()
    while True:
        code = service.process.poll()
        if code is not None:
            raise RuntimeError(
                f"{service.module} exited with {code} before {url} was ready:\n{service.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{url} not ready after {timeout:.0f} s:\n{service.log_tail()}")
        time.sleep(0.5)


def stop_process(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = STOP_SECONDS
) -> int:
    """Send `signum`, wait, SIGKILL after `timeout`; the return code."""
    if process.poll() is None:
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return int(process.returncode)


@contextmanager
def running_module(
    module: str, env: Mapping[str, str], log_dir: Path, base_url: str | None = None
) -> Iterator[ServiceProcess]:
    """`start_module`, always stopped (SIGTERM, then SIGKILL) on leaving."""
    service = start_module(module, env, log_dir, base_url)
    try:
        yield service
    finally:
        stop_process(service.process)


@contextmanager
def running_sidecar(model_dir: Path, log_dir: Path, port: int | None = None) -> Iterator[ServiceProcess]:
    """A ready Grad-CAM sidecar (`python -m service.sidecar`) serving `model_dir` on a free port."""
    port = port or free_port()
    env = {"MODEL_DIR": str(model_dir), "GRADCAM_HOST": LOOPBACK, "GRADCAM_PORT": str(port)}
    base_url = f"http://{LOOPBACK}:{port}"
    with running_module("service.sidecar", env, log_dir, base_url) as sidecar:
        wait_until_ready(f"{base_url}/readyz", sidecar)
        yield sidecar


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def is_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: list[int], timeout: float = STOP_SECONDS) -> list[int]:
    """Wait for every pid to end; the ones still running after `timeout`."""
    deadline = time.monotonic() + timeout
    while (running := [pid for pid in pids if is_running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running


# --- a TCP server that accepts and never answers (a hanging sidecar) ---------------------------


@contextmanager
def hanging_server() -> Iterator[str]:
    """Accepts connections, reads nothing, answers nothing; yields its http URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(128)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for connection in held:
            connection.close()
