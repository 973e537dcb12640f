"""`python -m service.run` (make run) heals itself: faults injected into the launcher's own children.

One launcher on free ports serves the module's scenarios in order (each waits for the state it
needs): it announces where everything is once both are ready; the API's heatmaps are the
sidecar's own Grad-CAM for each label; SIGKILL of the sidecar under steady load gives only 200s
(class activation maps with a warning while it is down) and Grad-CAM comes back without an API
restart; SIGKILL of the API is healed by a restart; SIGINT stops everything. Separate launchers
with a sidecar (and an API) that crash at start every time show the give-up rule. The figures go
to reliability-results/launcher.json.

CHAOS_LOAD_SECONDS (default 3) is how long steady load runs around the sidecar's kill, and with
CHAOS_FULL=1 also after Grad-CAM is back. `make chaos` sets both (20 s, full). This is also the
suite's check, through real processes, that Grad-CAM resumes after a sidecar restart without an API
restart (tests/reliability/test_faults.py's hand-started version runs under CHAOS_FULL only).
"""

import base64
import io
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from processes import (
    LOOPBACK,
    ServiceProcess,
    child_pids,
    command_line,
    free_port,
    start_module,
    stop_process,
    wait_until_gone,
)
from reliability_helpers import (
    FIXTURES,
    RADIOGRAPH,
    LoadGenerator,
    Outcome,
    metric_value,
    percentile,
    post_radiograph,
    record,
    summarise,
)

from cxr.model_card import MODEL_CARD_FILE, load_model_card
from cxr.preprocessing import preprocess_bytes
from service.api.rendering import MASK_LEVELS, upsample
from service.gradcam_protocol import GRADCAM_PATH, GradCamRequest, GradCamResponse, decode_array, encode_array
from service.run import STOP_GRACE_SECONDS

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SUITE = "launcher"
LOAD_SECONDS = float(os.environ.get("CHAOS_LOAD_SECONDS", "3"))
FULL = os.environ.get("CHAOS_FULL") == "1"
LOAD_CLIENTS = 2
LOAD_PAUSE_SECONDS = 0.2  # between a client's requests, so the restarting sidecar gets CPU
# Bounds, generous for TensorFlow's start-up on 2 busy cores (~20-90 s idle, minutes when busy).
START_SECONDS = 900.0  # launcher start until the API says "ready" (both children loaded)
RESPAWN_SECONDS = 120.0  # sidecar SIGKILLed until the API sees the new process (before its model loads)
GRADCAM_BACK_SECONDS = 900.0  # sidecar SIGKILLed until an answer has Grad-CAM again
GRADCAM_AFTER_READY_SECONDS = 15.0 + 30.0  # GRADCAM_RETRY_SECONDS (default) + margin
API_BACK_SECONDS = 300.0  # API SIGKILLed until it answers predictions again
GIVE_UP_SECONDS = 240.0
HEATMAP_LABELS = "all"
# A film on which 13 of the 14 labels have heat (on 00000001_000 only Cardiomegaly has any).
HEATMAP_IMAGE = FIXTURES / "00000404_000.png"


@dataclass
class Launcher:
    run: ServiceProcess
    api_url: str
    sidecar_url: str

    def children(self) -> dict[str, int]:
        """'sidecar' / 'api' -> pid of each running child of the launcher."""
        pids = {}
        for pid in child_pids(self.run.pid):
            for name, module in (("sidecar", "service.sidecar"), ("api", "service.api")):
                if f"-m {module}" in command_line(pid):
                    pids[name] = pid
        return pids

    def log(self) -> str:
        return self.run.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.run.process.poll() is None

    def readiness(self) -> dict[str, object] | None:
        try:
            body = httpx.get(f"{self.api_url}/readyz", timeout=5.0).json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def wait_for_log(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := re.search(pattern, self.log()):
                return match
            assert self.alive(), self.run.log_tail(60)
            time.sleep(0.5)
        pytest.fail(f"no {pattern!r} in the launcher's log after {timeout:.0f} s:\n{self.run.log_tail(60)}")


def start_launcher(env: dict[str, str], log_dir: Path) -> Launcher:
    api_port, gradcam_port = free_port(), free_port()
    env = {
        "API_PORT": str(api_port),
        "API_HOST": LOOPBACK,
        "GRADCAM_HOST": LOOPBACK,
        "GRADCAM_PORT": str(gradcam_port),
        "API_KEYS": "",
        "LOG_FORMAT": "text",
        "ORT_INTRA_OP_THREADS": "1",
        **env,
    }
    run = start_module("service.run", env, log_dir)
    return Launcher(run, f"http://{LOOPBACK}:{api_port}", f"http://{LOOPBACK}:{gradcam_port}")


def wait_until(condition: Callable[[], object], timeout: float, launcher: Launcher) -> float:
    """Poll `condition` until truthy; seconds waited. Fails if the launcher exits."""
    started = time.monotonic()
    while not condition():
        assert launcher.alive(), f"the launcher exited:\n{launcher.run.log_tail(60)}"
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout:.0f} s:\n{launcher.run.log_tail(60)}")
        time.sleep(0.5)
    return time.monotonic() - started


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def launcher(model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """`python -m service.run` with the default restart and breaker settings (as `make run`)."""
    launcher = start_launcher(
        {"MODEL_DIR": str(model_dir), "ONNX_DIR": str(onnx_dir)}, tmp_path_factory.mktemp("launcher")
    )
    try:
        seconds = wait_until(
            lambda: (launcher.readiness() or {}).get("state") == "ready", START_SECONDS, launcher
        )
        record(SUITE, start_seconds=round(seconds, 1))
        yield launcher
    finally:
        stop_process(launcher.run.process, timeout=STOP_GRACE_SECONDS + 15)


def test_the_launcher_says_once_where_everything_is(launcher: Launcher) -> None:
    match = launcher.wait_for_log(r"ready: the page at (\S+)/ , the API docs at (\S+)/docs", timeout=30)
    assert match[1] == match[2] == launcher.api_url
    for path in ("/", "/docs"):
        assert httpx.get(launcher.api_url + path, timeout=30).status_code == 200, path
    assert launcher.log().count("ready: the page at") == 1


def test_heatmaps_are_the_sidecars_own_for_each_label(launcher: Launcher, model_dir: Path) -> None:
    """The API's heatmap of each label is the sidecar's Grad-CAM of that label (not another label's,
    not the CAM fallback's), rendered as a mask whose palette index is the heat."""
    card = load_model_card(model_dir)
    size = card.input_size
    response = httpx.post(
        f"{launcher.api_url}/v1/predict",
        params={"heatmaps": HEATMAP_LABELS, "heatmap_style": "mask", "heatmap_size": size},
        files={"file": ("cxr.png", HEATMAP_IMAGE.read_bytes())},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["heatmap_engine"] == "tensorflow", body["warnings"]  # the fallback fails this test
    assert not any("sidecar" in warning for warning in body["warnings"]), body["warnings"]
    labels = list(body["heatmaps"])
    assert len(labels) == 14

    tensor = preprocess_bytes(
        HEATMAP_IMAGE.read_bytes(), size, card.normalisation.mean, card.normalisation.std
    )
    request = GradCamRequest(tensor=encode_array(tensor), shape=(size, size, 3), labels=labels)
    answer = httpx.post(
        launcher.sidecar_url + GRADCAM_PATH,
        content=request.model_dump_json(),
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    gradcam = GradCamResponse.model_validate_json(answer.content)
    expected = {
        label: upsample(decode_array(gradcam.heatmaps[label], gradcam.heatmap_shape), size)
        for label in labels
    }
    served = {label: mask_heat(body["heatmaps"][label]) for label in labels}

    for label in labels:
        own = float(np.abs(served[label] - expected[label]).max())
        assert own <= 2.0 / (MASK_LEVELS - 1), (label, own)  # quantised to 256 levels, nothing else
    pairs = [(a, b) for a in labels for b in labels if a != b]
    differing = [(a, b) for a, b in pairs if np.abs(expected[a] - expected[b]).mean() > 0.05]
    nonzero = [label for label in labels if expected[label].max() > 0]
    assert len(nonzero) >= 2 and differing, nonzero  # the labels' maps differ ...
    for a, b in differing:  # ... and the API put each under its own label, not another's
        assert np.abs(served[a] - expected[b]).mean() > 0.02, (a, b)
    record(SUITE, heatmap_labels_with_heat=nonzero, heatmap_label_pairs_differing=len(differing) // 2)


def mask_heat(png_base64: str) -> np.ndarray:
    """A mask-style heatmap PNG back to heat in [0, 1] (its palette index / 255)."""
    with Image.open(io.BytesIO(base64.b64decode(png_base64))) as image:
        assert image.mode == "P"
        return np.asarray(image, dtype=np.float32) / (MASK_LEVELS - 1)


def test_sidecar_killed_under_load_only_200s_and_gradcam_comes_back(launcher: Launcher) -> None:
    """Waits for Grad-CAM to come back (the new sidecar's TensorFlow start); CHAOS_FULL (make
    chaos) also keeps the load running a while after it is back."""
    wait_until(lambda: (launcher.readiness() or {}).get("state") == "ready", START_SECONDS, launcher)
    before = launcher.children()
    load = LoadGenerator(
        launcher.api_url, post_radiograph("?heatmaps=top:1"), LOAD_CLIENTS, pause=LOAD_PAUSE_SECONDS
    ).start()
    back: Outcome | None = None
    sidecar_ready_at: float | None = None
    try:
        time.sleep(LOAD_SECONDS)
        killed_at = time.monotonic()
        os.kill(before["sidecar"], signal.SIGKILL)
        respawn_seconds = wait_until(lambda: restarts_seen(launcher) == 1, RESPAWN_SECONDS, launcher)
        time.sleep(LOAD_SECONDS)
        while (back := load.wait_for(lambda o: o.engine == "tensorflow", killed_at + 1.0, 1.0)) is None:
            if sidecar_ready_at is None and answers_200(launcher.sidecar_url + "/readyz"):
                sidecar_ready_at = time.monotonic()
            assert launcher.alive(), launcher.run.log_tail(60)
            assert time.monotonic() - killed_at < GRADCAM_BACK_SECONDS, launcher.run.log_tail(60)
        if FULL:
            time.sleep(LOAD_SECONDS)
    finally:
        outcomes = load.stop()
    after = launcher.children()
    metrics = httpx.get(launcher.api_url + "/metrics", timeout=30).text
    readiness = launcher.readiness() or {}
    assert back is not None  # the loop above ends only with an answer from Grad-CAM

    outage = [o for o in outcomes if killed_at <= o.started < back.started]
    not_200 = [o for o in outcomes if o.status != 200]
    figures: dict[str, object] = {
        "load_clients": LOAD_CLIENTS,
        "requests": len(outcomes),
        "requests_during_outage": len(outage),
        "non_200": len(not_200),
        "connection_errors": sum(o.status is None for o in outcomes),
        "outage_engines": engine_counts(outage),
        "outage_p99_seconds": round(percentile([o.seconds for o in outage], 99), 2),
        "new_sidecar_seen_by_the_api_seconds": round(respawn_seconds, 1),
    }
    back_at = back.started + back.seconds
    after_ready = back_at - (sidecar_ready_at or back_at)
    figures["gradcam_back_seconds"] = round(back_at - killed_at, 1)
    figures["gradcam_back_after_sidecar_ready_seconds"] = round(after_ready, 1)
    record(SUITE, sidecar_killed=figures)
    summarise(
        SUITE,
        f"sidecar SIGKILLed under load ({LOAD_CLIENTS} clients) through service.run: "
        f"{len(outcomes)} requests, {len(outage)} during the outage, {len(not_200)} not 200; new sidecar "
        f"seen by the API after {respawn_seconds:.1f} s"
        f"; Grad-CAM back {figures['gradcam_back_seconds']} s after the kill "
        f"({figures['gradcam_back_after_sidecar_ready_seconds']} s after the new sidecar was ready)",
    )
    assert not not_200, not_200[:5]
    assert outage, "no request while the sidecar was down"
    for outcome in outage:
        assert outcome.engine in ("cam", "tensorflow"), outcome  # a call already under way may finish
        if outcome.engine == "cam":
            assert any("sidecar" in warning for warning in outcome.warnings), outcome
    assert sum(o.engine == "cam" for o in outage) >= len(outage) - LOAD_CLIENTS
    # Healed by a restart of the sidecar alone; the API noticed the new instance.
    assert after["api"] == before["api"] and after["sidecar"] != before["sidecar"], (before, after)
    assert re.search(r"sidecar exited \(signal SIGKILL\) after [\d.]+ s; restart 1 in 1.0 s", launcher.log())
    assert metric_value(metrics, "cxr_sidecar_restarts_total") == 1.0, metrics
    assert (metric_value(metrics, "cxr_sidecar_started_timestamp_seconds") or 0) > time.time() - 3600
    assert after_ready < GRADCAM_AFTER_READY_SECONDS, figures
    assert readiness["state"] == "ready", readiness


def restarts_seen(launcher: Launcher) -> object:
    sidecar = (launcher.readiness() or {}).get("sidecar")
    return sidecar.get("restarts_seen") if isinstance(sidecar, dict) else None


def engine_counts(outcomes: list[Outcome]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[str(outcome.engine)] = counts.get(str(outcome.engine), 0) + 1
    return counts


def test_api_killed_is_restarted_and_serves_again(launcher: Launcher) -> None:
    before = launcher.children()
    killed_at = time.monotonic()
    os.kill(before["api"], signal.SIGKILL)
    image = RADIOGRAPH.read_bytes()

    def predicts() -> bool:
        try:
            response = httpx.post(
                f"{launcher.api_url}/v1/predict", files={"file": ("x.png", image)}, timeout=30
            )
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    seconds = wait_until(predicts, API_BACK_SECONDS, launcher)
    after = launcher.children()
    record(SUITE, api_killed={"api_back_seconds": round(time.monotonic() - killed_at, 1)})
    summarise(
        SUITE, f"API SIGKILLed: the launcher restarted it, predictions answered again after {seconds:.1f} s"
    )
    assert after["api"] != before["api"] and after["sidecar"] == before["sidecar"], (before, after)
    assert re.search(r"api exited \(signal SIGKILL\) after [\d.]+ s; restart 1 in 1.0 s", launcher.log())


def test_sigint_stops_both_children_within_the_grace_period(launcher: Launcher) -> None:
    children = launcher.children()
    assert set(children) == {"api", "sidecar"}, children
    launcher.run.process.send_signal(signal.SIGINT)
    assert launcher.run.process.wait(STOP_GRACE_SECONDS + 15) == 0, launcher.run.log_tail(60)
    assert wait_until_gone(list(children.values())) == []


# --- children that crash at start every time ----------------------------------------------------


def model_without_weights(model_dir: Path, target: Path) -> Path:
    """The model card alone: the API serves from the ONNX export, the sidecar exits at start
    (its weights file is missing) before it ever loads TensorFlow."""
    target.mkdir(parents=True)
    (target / MODEL_CARD_FILE).write_bytes((model_dir / MODEL_CARD_FILE).read_bytes())
    return target


FAST_GIVE_UP = {"RESTART_SEC": "0.5", "START_LIMIT_BURST": "3", "START_LIMIT_INTERVAL_SEC": "120"}


def test_a_sidecar_crashing_at_start_is_given_up_on_and_the_api_serves(
    model_dir: Path, onnx_dir: Path, tmp_path: Path
) -> None:
    model = model_without_weights(model_dir, tmp_path / "model")
    launcher = start_launcher({"MODEL_DIR": str(model), "ONNX_DIR": str(onnx_dir), **FAST_GIVE_UP}, tmp_path)
    try:
        started = time.monotonic()
        launcher.wait_for_log(r"sidecar exited \(exit code \d+\) 3 times .* giving up on it", GIVE_UP_SECONDS)
        gave_up_seconds = time.monotonic() - started
        wait_until(lambda: answers_200(f"{launcher.api_url}/readyz"), START_SECONDS, launcher)
        response = httpx.post(
            f"{launcher.api_url}/v1/predict?heatmaps=top:1",
            files={"file": ("x.png", RADIOGRAPH.read_bytes())},
            timeout=60,
        )
        time.sleep(3.0)  # no further restart after giving up
        log = launcher.log()
        readiness = launcher.readiness() or {}
        children = launcher.children()
        assert launcher.alive(), launcher.run.log_tail(60)
        # A launcher killed outright leaves no child behind (the kernel SIGTERMs them).
        launcher.run.process.send_signal(signal.SIGKILL)
        launcher.run.process.wait(30)
        orphans = wait_until_gone(list(children.values()))
    finally:
        stop_process(launcher.run.process)
    record(SUITE, sidecar_crashing={"gave_up_seconds": round(gave_up_seconds, 1)})
    summarise(
        SUITE,
        f"sidecar crashing at start: given up on after 3 exits in {gave_up_seconds:.1f} s; API serving CAM",
    )
    assert response.status_code == 200 and response.json()["heatmap_engine"] == "cam", response.text
    assert any("sidecar" in warning for warning in response.json()["warnings"])
    assert readiness["state"] == "degraded", readiness
    assert log.count("started sidecar") == 3 and set(children) == {"api"}, (children, log[-3000:])
    assert orphans == [], f"children outlived the killed launcher: {orphans}"


def test_an_api_crashing_at_start_makes_the_launcher_exit_non_zero(model_dir: Path, tmp_path: Path) -> None:
    model = model_without_weights(model_dir, tmp_path / "model")
    empty = tmp_path / "no-export"
    empty.mkdir()
    env = {"MODEL_DIR": str(model), "ONNX_DIR": str(empty), **FAST_GIVE_UP, "START_LIMIT_BURST": "2"}
    launcher = start_launcher(env, tmp_path)
    try:
        code = launcher.run.process.wait(GIVE_UP_SECONDS)
    finally:
        stop_process(launcher.run.process)
    log = launcher.log()
    assert code == 1, log[-3000:]
    assert re.search(r"api exited \(exit code \d+\) 2 times .* giving up on it", log), log[-3000:]
    assert log.count("started api") == 2, log[-3000:]
