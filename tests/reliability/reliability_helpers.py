"""Helpers of the reliability suites: a real API process over HTTP, what /proc says about it,
problem+json checks, percentiles, and the figures each suite reports.

Import as `from reliability_helpers import ...` (pytest puts this folder on sys.path).
"""

import io
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from processes import LOOPBACK, ServiceProcess, free_port, start_module, stop_process, wait_until_ready

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
RADIOGRAPH = FIXTURES / "00000001_000.png"  # a real NIH radiograph, 1024 x 1024 8-bit PNG
RESULTS_DIR = REPO / "reliability-results"
API_START_SECONDS = 240.0  # import + model load + self-check on 2 busy cores
PROBLEM_FIELDS = {"type", "title", "status", "detail", "request_id"}
_METRIC_LINE = re.compile(r"^cxr_http_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")


# --- /proc -------------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) of `pid` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    """Open file descriptors of `pid` (entries of /proc/PID/fd)."""
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


# --- the API as a real process ----------------------------------------------------------------


def api_environment(model_dir: Path, onnx_dir: Path, port: int, **overrides: object) -> dict[str, str]:
    """The environment of a test API: loopback, no keys, a dead sidecar, JSON logs; + overrides
    (keyword NAME=value for variable NAME). Every variable that matters is set explicitly, so the
    caller's environment cannot change the test."""
    env = {
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "API_HOST": LOOPBACK,
        "API_PORT": str(port),
        "API_KEYS": "",
        "CORS_ORIGINS": "",
        "GRADCAM_URL": f"http://{LOOPBACK}:{free_port()}",  # nothing listens: refused at once
        "ORT_INTRA_OP_THREADS": "1",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "OOD_MODE": "warn",
        "HEATMAP_FALLBACK": "cam",
    }
    env.update({name.upper(): str(value) for name, value in overrides.items()})
    return env


@dataclass
class Api:
    """A running `python -m service.api` and how to look at it."""

    service: ServiceProcess
    base_url: str
    env: dict[str, str]
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=120.0)

    @property
    def pid(self) -> int:
        return self.service.pid

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def fds(self) -> int:
        return fd_count(self.pid)

    def log_text(self) -> str:
        return self.service.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float | None:
        """One sample of the API's /metrics page; None when it does not export it (yet)."""
        return metric_value(self.client.get("/metrics").text, name)

    def access_log(self) -> list[dict[str, Any]]:
        """The API's access log entries (JSON lines of logger service.api.access)."""
        entries = []
        for line in self.log_text().splitlines():
            if line.startswith("{") and '"service.api.access"' in line:
                entries.append(json.loads(line))
        return entries

    def alive(self) -> bool:
        return self.service.process.poll() is None

    def status_counts(self, readyz: bool = False) -> dict[int, int]:
        """HTTP status -> requests answered so far, from the API's own /metrics (without GET
        /readyz, which answers 503 by design while the model loads, unless `readyz`)."""
        counts: dict[int, int] = {}
        for line in httpx.get(f"{self.base_url}/metrics", timeout=30.0).text.splitlines():
            match = _METRIC_LINE.match(line)
            if match and (readyz or 'endpoint="/readyz"' not in match["labels"]):
                status = int(re.search(r'status="(\d+)"', match["labels"])[1])  # type: ignore[index]
                counts[status] = counts.get(status, 0) + int(float(match["value"]))
        return counts

    def server_errors(self, allowed: tuple[int, ...] = ()) -> int:
        """Requests answered 5xx (except the statuses in `allowed`, e.g. a designed 503)."""
        return sum(n for status, n in self.status_counts().items() if status >= 500 and status not in allowed)

    def assert_healthy(self) -> None:
        """The process runs, /healthz is 200 and a real radiograph is still classified."""
        assert self.alive(), f"the API exited:\n{self.service.log_tail()}"
        assert httpx.get(f"{self.base_url}/healthz", timeout=30.0).status_code == 200
        response = self.client.post("/v1/predict", files={"file": ("cxr.png", RADIOGRAPH.read_bytes())})
        assert response.status_code == 200, response.text
        assert len(response.json()["probabilities"]) == 14


@contextmanager
def running_api(model_dir: Path, onnx_dir: Path, log_dir: Path, **overrides: object) -> Iterator[Api]:
    """A ready API (readyz 200) on a free port; stopped (SIGTERM, then SIGKILL) on leaving."""
    port = free_port()
    env = api_environment(model_dir, onnx_dir, port, **overrides)
    base_url = f"http://{LOOPBACK}:{port}"
    service = start_module("service.api", env, log_dir, base_url)
    api = Api(service, base_url, env)
    try:
        wait_until_ready(f"{base_url}/readyz", service, timeout=API_START_SECONDS)
        yield api
    finally:
        api.client.close()
        stop_process(service.process)


def run_to_exit(
    module: str, env: Mapping[str, str], log_dir: Path, url: str | None = None, timeout: float = 240.0
) -> tuple[int, str, list[int]]:
    """Start `module`, poll `url` (if any) until the process exits: (exit code, output, statuses seen)."""
    service = start_module(module, env, log_dir)
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while service.process.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{module} still running after {timeout:.0f} s:\n{service.log_tail()}")
            if url is not None:
                with suppress(httpx.HTTPError):
                    statuses.append(httpx.get(url, timeout=2.0).status_code)
            time.sleep(0.2)
    finally:
        code = stop_process(service.process)
    return code, service.log_path.read_text(errors="replace"), statuses


# --- HTTP details ------------------------------------------------------------------------------


def metric_value(metrics_text: str, name: str) -> float | None:
    """One sample of a Prometheus text page (`name` may carry its {labels}); None when absent."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is application/problem+json with `status` and every problem field."""
    assert response.status_code == status, f"{response.status_code} (expected {status}): {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS, body
    assert body["status"] == status
    assert body["type"].startswith("urn:cxr:problem:")
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@dataclass
class RawAnswer:
    """What a raw socket client got back: the status line's code (None: closed without answer)."""

    status: int | None
    head: bytes
    seconds: float
    bytes_sent: int


def read_answer(sock: socket.socket, started: float, sent: int, timeout: float) -> RawAnswer:
    """Read until the headers end (or the connection closes) within `timeout` seconds."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    match = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return RawAnswer(int(match[1]) if match else None, data, time.monotonic() - started, sent)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def radiograph_of_size(side: int) -> bytes:
    """The fixture radiograph resized to side x side, as PNG."""
    with Image.open(RADIOGRAPH) as image:
        resized = image.convert("L").resize((side, side))
    buffer = io.BytesIO()
    resized.save(buffer, format="PNG")
    return buffer.getvalue()


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


# --- figures -----------------------------------------------------------------------------------

# suite -> figures; filled by the tests, printed at the end of the run and written as JSON into
# reliability-results/<suite>.json by conftest.py.
FIGURES: dict[str, dict[str, Any]] = {}
SUMMARIES: dict[str, list[str]] = {}


def record(suite: str, **figures: Any) -> None:
    FIGURES.setdefault(suite, {}).update(figures)


def summarise(suite: str, line: str) -> None:
    """One human line of the suite's figures (printed after the run, kept in its JSON)."""
    SUMMARIES.setdefault(suite, []).append(line)


def write_results() -> list[Path]:
    RESULTS_DIR.mkdir(exist_ok=True)
    written = []
    for suite, figures in FIGURES.items():
        path = RESULTS_DIR / f"{suite}.json"
        payload = {
            "suite": suite,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": _commit(),
            "summary": SUMMARIES.get(suite, []),
            "figures": figures,
        }
        path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
        written.append(path)
    return written


def _commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# --- load ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One request of a load run."""

    kind: str
    started: float  # time.monotonic() when sent
    seconds: float
    status: int | None  # None: no HTTP answer (connection error or client timeout)
    engine: str | None = None
    warnings: list[str] = field(default_factory=list)
    retry_after: str | None = None
    problem_type: str | None = None
    error: str | None = None


# (client, sequence number) -> (kind, response)
Send = Callable[[httpx.Client, int], tuple[str, httpx.Response]]


def outcome_of(kind: str, started: float, response: httpx.Response) -> Outcome:
    seconds = time.monotonic() - started
    engine, warnings, problem_type = None, [], None
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = response.json()
        if isinstance(body, dict):
            engine, warnings = body.get("heatmap_engine"), list(body.get("warnings", []))
    elif content_type.startswith("application/problem+json"):
        problem_type = response.json().get("type")
    retry_after = response.headers.get("retry-after")
    return Outcome(kind, started, seconds, response.status_code, engine, warnings, retry_after, problem_type)


class LoadGenerator:
    """`clients` threads, each with its own keep-alive connection, calling `send` in a loop (with
    `pause` seconds between calls) from start() until stop(); every call becomes an Outcome."""

    def __init__(
        self, base_url: str, send: Send, clients: int, pause: float = 0.0, timeout: float = 120.0
    ) -> None:
        self.base_url = base_url
        self.send = send
        self.clients = clients
        self.pause = pause
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _run(self, index: int) -> None:
        sequence = index
        with httpx.Client(base_url=self.base_url, timeout=self.timeout) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    kind, response = self.send(client, sequence)
                    outcome = outcome_of(kind, started, response)
                except httpx.HTTPError as error:
                    outcome = Outcome("?", started, time.monotonic() - started, None, error=repr(error))
                with self._lock:
                    self.outcomes.append(outcome)
                sequence += self.clients
                if self.pause:
                    self._stop.wait(self.pause)

    def start(self) -> "LoadGenerator":
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 30)
        return self.snapshot()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def wait_for(self, predicate: Callable[[Outcome], bool], after: float, timeout: float) -> Outcome | None:
        """The first outcome started after `after` that satisfies `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for outcome in self.snapshot():
                if outcome.started >= after and predicate(outcome):
                    return outcome
            time.sleep(0.2)
        return None


def post_radiograph(query: str = "") -> Send:
    """A Send posting the fixture radiograph (multipart) with `query`."""
    image = RADIOGRAPH.read_bytes()

    def send(client: httpx.Client, _: int) -> tuple[str, httpx.Response]:
        return "predict", client.post(f"/v1/predict{query}", files={"file": ("cxr.png", image)})

    return send
