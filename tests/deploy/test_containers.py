"""Each container's command, run outside Docker: the Dockerfile's CMD and HEALTHCHECK of the `gradcam`
and `api` targets, with the environment the Dockerfile and docker-compose.yml give them, against
the repo's model on free ports.

Paths inside the image are mapped back to the repo through the Dockerfile's own COPY lines (the
`export` stage's output to the test's ONNX export), `python` is this interpreter, and the only
other changes are the ones a host needs: free ports instead of 8000/8001, 127.0.0.1 instead of
0.0.0.0 and compose's service name, and a generated API key.
"""

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import httpx
import pytest
from deploy_files import REPO, Stage, environment_of, load_compose, parse_dockerfile

pytestmark = pytest.mark.slow

START_TIMEOUT = 300.0  # TensorFlow's import and the model load, on a busy 2-core machine


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def path_map(stage: Stage, stages: dict[str, Stage], onnx_dir: Path) -> dict[str, Path]:
    """Image path -> repo path, from the stage's WORKDIR and COPY instructions."""
    mapping: dict[str, Path] = {"/app": REPO}
    for copy in stage.copies:
        destination = copy.destination.rstrip("/")
        if copy.from_stage is not None:
            producer = stages[copy.from_stage]
            # The stage the files come from made them with `python -m export ... --out DIR`.
            outs = [run.split("--out", 1)[1].split()[0] for run in producer.runs if "-m export" in run]
            assert outs and outs[-1].rstrip("/") == copy.sources[0].rstrip("/"), (
                f"COPY --from={copy.from_stage} {copy.sources[0]}: not what the export there wrote ({outs})"
            )
            mapping[destination] = onnx_dir
            continue
        if copy.destination.endswith("/"):
            if len(copy.sources) == 1 and not copy.sources[0].endswith("/") and "*" not in copy.sources[0]:
                source = Path(copy.sources[0])
                mapping[destination] = (REPO / source).parent if (REPO / source).is_file() else REPO / source
            elif len(copy.sources) == 1:
                mapping.setdefault(destination, REPO / copy.sources[0].rstrip("/"))
            else:  # several files into one folder: the folder is their common parent
                parents = {(REPO / source).parent for source in copy.sources}
                assert len(parents) == 1, (
                    f"COPY {copy.sources} {copy.destination}: files from several folders"
                )
                mapping[destination] = parents.pop()
        else:
            source = REPO / copy.sources[0]
            mapping[destination] = source
            mapping.setdefault(str(PurePosixPath(destination).parent), source.parent)
    return mapping


def to_host(value: str, mapping: dict[str, Path]) -> str:
    for image_path in sorted(mapping, key=len, reverse=True):
        if value == image_path or value.startswith(image_path + "/"):
            return str(mapping[image_path]) + value[len(image_path) :]
    return value


@dataclass
class Container:
    name: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    healthcheck: list[str]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def probe(self) -> subprocess.CompletedProcess[str]:
        """The image's HEALTHCHECK command, as Docker would run it inside the container."""
        return subprocess.run(
            self.healthcheck, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=30, check=False
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=10).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        pytest.fail(f"{self.name} not ready after {START_TIMEOUT:.0f} s:\n{self.log.read_text()[-3000:]}")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            if self.probe().returncode == 0:
                return
            time.sleep(1.0)
        self.stop()
        pytest.fail(f"{self.name} not healthy after {START_TIMEOUT:.0f} s:\n{self.log.read_text()[-3000:]}")


def launch(
    target: str,
    service: str,
    overrides: dict[str, str],
    port_variable: str,
    model_dir: Path,
    onnx_dir: Path,
    log_dir: Path,
) -> Container:
    stages = parse_dockerfile(build_args={"MODEL_DIR": str(model_dir)})
    stage = stages[target]
    assert stage.cmd and stage.healthcheck, f"the {target} target needs a CMD and a HEALTHCHECK"
    compose = load_compose({"API_KEYS": overrides.get("API_KEYS", "unused-in-this-service")})
    mapping = path_map(stage, stages, onnx_dir)

    env = {key: os.environ[key] for key in ("PATH", "LANG", "HOME", "TMPDIR") if key in os.environ}
    env.update(stage.env)
    env.update(environment_of(compose["services"][service]))
    env = {key: to_host(value, mapping) for key, value in env.items()}
    port = _free_port()
    env[port_variable] = str(port)
    for key, value in list(env.items()):
        if key.endswith("_HOST") and value == "0.0.0.0":
            env[key] = "127.0.0.1"
    env.update(overrides)

    def command(words: list[str]) -> list[str]:
        return [sys.executable if word == "python" else to_host(word, mapping) for word in words]

    log = log_dir / f"{target}.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command(stage.cmd), env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
    return Container(target, process, env, command(stage.healthcheck), port, log)


@pytest.fixture(scope="module")
def api_key() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def stack(
    model_dir: Path, onnx_dir: Path, api_key: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Container]]:
    import importlib.util

    for module in ("service.api.__main__", "service.sidecar.__main__"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not written yet")
    logs = tmp_path_factory.mktemp("containers")
    gradcam = launch("gradcam", "gradcam", {}, "GRADCAM_PORT", model_dir, onnx_dir, logs)
    containers = {"gradcam": gradcam}
    try:
        gradcam.wait_healthy()  # compose: depends_on gradcam service_healthy
        api = launch(
            "api",
            "api",
            {"API_KEYS": api_key, "GRADCAM_URL": f"http://127.0.0.1:{gradcam.port}"},
            "API_PORT",
            model_dir,
            onnx_dir,
            logs,
        )
        containers["api"] = api
        api.wait_healthy()
        api.wait_ready()  # healthy = the process answers; ready = the model is loaded
        yield containers
    finally:
        for container in reversed(containers.values()):
            container.stop()


def test_compose_points_the_api_at_the_gradcam_service() -> None:
    services = load_compose({"API_KEYS": "x" * 16})["services"]
    url = environment_of(services["api"])["GRADCAM_URL"]
    assert url == f"http://gradcam:{environment_of(services['gradcam'])['GRADCAM_PORT']}"


def test_both_containers_pass_their_own_healthcheck(stack: dict[str, Container]) -> None:
    for container in stack.values():
        result = container.probe()
        assert result.returncode == 0, result.stderr
        assert httpx.get(container.url + "/healthz", timeout=10).status_code == 200


def test_the_api_serves_predictions_with_sidecar_heatmaps(
    stack: dict[str, Container], fixture_images: list[Path], api_key: str
) -> None:
    headers = {"X-API-Key": api_key, "Authorization": f"Bearer {api_key}"}
    image = fixture_images[0]
    stack["gradcam"].wait_ready()  # Grad-CAM's model loaded: the heatmaps must be its own
    response = httpx.post(
        stack["api"].url + "/v1/predict",
        params={"heatmaps": "top:1"},
        files={"file": (image.name, image.read_bytes(), "image/png")},
        headers=headers,
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("heatmaps"), body.keys()
    # The sidecar's Grad-CAM, not the API's CAM fallback (which would also give heatmaps).
    assert body["heatmap_engine"] == "tensorflow", body["warnings"]
    # Without a key the API refuses: the compose file's API_KEYS reached the process.
    refused = httpx.post(
        stack["api"].url + "/v1/predict",
        files={"file": (image.name, image.read_bytes(), "image/png")},
        timeout=60,
    )
    assert refused.status_code == 401


def test_the_healthcheck_fails_once_the_process_is_gone(stack: dict[str, Container]) -> None:
    api = stack["api"]
    api.stop()
    result = api.probe()
    assert result.returncode == 1
    assert "unhealthy" in result.stderr
