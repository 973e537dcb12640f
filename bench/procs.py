"""Start the services as subprocesses on free ports, wait for them, read their memory, stop them."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float | None:
    """Resident set size (VmRSS) of one process in MB, None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def tree_rss_mb(pid: int) -> float | None:
    """VmRSS of a process plus its children (uvicorn workers), in MB."""
    total = rss_mb(pid)
    if total is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        total += tree_rss_mb(int(child)) or 0.0
    return total


@dataclass
class Service:
    """A server started by the benchmark: its process, URL and log file."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: uvicorn shuts down gracefully
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def rss_mb(self) -> float | None:
        return tree_rss_mb(self.process.pid)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    args: list[str],
    env: Mapping[str, str],
    url: str,
    log_dir: Path,
    *,
    ready_path: str = "/healthz",
    timeout: float = 240.0,
) -> Service:
    """Run `python args...` from the repo with `env` added; return once GET url+ready_path is 200
    (use the readiness endpoint: a process answers /healthz before its model is loaded)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=full_env, stdout=handle, stderr=subprocess.STDOUT
        )
    service = Service(name, process, url, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{service.tail()}")
        try:
            if httpx.get(url + ready_path, timeout=2.0).status_code == 200:
                return service
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    service.stop()
    raise RuntimeError(f"{name} not ready after {timeout:.0f} s:\n{service.tail()}")


@dataclass
class RssSampler:
    """Samples a process's RSS every `period` seconds in a thread; `peak_mb` is the largest seen."""

    service: Service
    period: float = 0.2
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "RssSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.service.rss_mb()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.period)

    @property
    def peak_mb(self) -> float | None:
        return max(self.samples) if self.samples else None
