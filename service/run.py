"""`python -m service.run` (make run): the Grad-CAM sidecar and the API as two supervised children.

Runs in the foreground and logs to stdout (the children's output too). A child that exits on its
own is restarted with exponential backoff and given up on after a burst of exits
(service/restart_policy.py: RESTART_SEC, RESTART_MAX_DELAY_SEC, RESTART_RESET_SEC,
START_LIMIT_BURST, START_LIMIT_INTERVAL_SEC). While the sidecar is down the API keeps serving
(class activation maps with a warning) and picks Grad-CAM up again once the sidecar is back; if
the sidecar is given up on the API still serves; if the API is given up on, run stops the sidecar
and exits 1. Ctrl-C or SIGTERM is forwarded to both children (as SIGTERM), which then shut down
gracefully; a second signal or STOP_GRACE_SECONDS kill what is left. No child outlives run (the
children get SIGTERM from the kernel if run itself dies).

API_PORT and GRADCAM_PORT choose the ports; the API is told where the sidecar is through
GRADCAM_URL. MODEL_DIR, ONNX_DIR and the rest of the environment pass through unchanged.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
from pydantic import ValidationError

from service.restart_policy import RestartHistory, describe_exit, get_policy

logger = logging.getLogger("service.run")

CHILDREN = {"sidecar": "service.sidecar", "api": "service.api"}
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 20.0
READY_CHECK_SECONDS = 2.0
PR_SET_PDEATHSIG = 1


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of both children: ours, plus GRADCAM_URL pointing the API at the sidecar."""
    env = dict(environ)
    host = env.get("GRADCAM_HOST", "127.0.0.1")
    reachable_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    env["GRADCAM_URL"] = f"http://{reachable_host}:{env.get('GRADCAM_PORT', '8001')}"
    env.setdefault("PYTHONUNBUFFERED", "1")  # children's logs appear as they happen
    return env


def parent_death_signal() -> Callable[[], None] | None:
    """For the child before exec (Linux): SIGTERM it if run itself dies, so no child is orphaned."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_child(name: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """`python -m <module>` in its own session, so a terminal's Ctrl-C reaches it only through run."""
    process = subprocess.Popen(
        [sys.executable, "-m", CHILDREN[name]],
        env=env,
        stderr=subprocess.STDOUT,  # both streams to run's stdout
        start_new_session=True,
        preexec_fn=parent_death_signal(),
    )
    logger.info("started %s (pid %d)", name, process.pid)
    return process


def stop_children(children: dict[str, subprocess.Popen[bytes]], signals: list[int]) -> bool:
    """SIGTERM every running child (uvicorn's graceful shutdown, without a KeyboardInterrupt trace)
    and wait; SIGKILL what is left after the grace period or on another signal to run. True when
    every child stopped by itself."""
    for name, process in children.items():
        if process.poll() is None:
            logger.info("stopping %s (pid %d)", name, process.pid)
            process.terminate()
    already_signalled = len(signals)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while any(process.poll() is None for process in children.values()):
        if time.monotonic() > deadline or len(signals) > already_signalled:
            for name, process in children.items():
                if process.poll() is None:
                    logger.warning("killing %s (pid %d)", name, process.pid)
                    process.kill()
                    process.wait()
            return False
        time.sleep(POLL_SECONDS / 2)
    for name, process in children.items():
        logger.info("%s exited with %s", name, process.returncode)
    return True


@dataclass
class Child:
    """One supervised child: its process (None while waiting to restart) and its exits."""

    name: str
    history: RestartHistory
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    given_up: bool = False


def announce_when_ready(env: Mapping[str, str]) -> Callable[[], bool]:
    """A check run calls each poll until it returns True: when the API's /readyz says "ready"
    (model loaded, the sidecar ready with the same weights), log once where everything is."""
    host = env.get("API_HOST", "127.0.0.1")
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{env.get('API_PORT', '8000')}"
    next_check = 0.0

    def check() -> bool:
        nonlocal next_check
        if time.monotonic() < next_check:
            return False
        next_check = time.monotonic() + READY_CHECK_SECONDS
        try:
            state = httpx.get(f"{base}/readyz", timeout=READY_CHECK_SECONDS).json().get("state")
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        if state != "ready":
            return False
        logger.info(
            "ready: the page at %s/ , the API docs at %s/docs , predictions at POST %s/v1/predict "
            "(Grad-CAM sidecar at %s); Ctrl-C stops both",
            base,
            base,
            base,
            env["GRADCAM_URL"],
        )
        return True

    return check


def handle_exit(child: Child, code: int, now: float) -> None:
    """Log the exit and schedule the restart, or give up on the child."""
    decision = child.history.record_exit(now, now - child.started_at)
    child.process = None
    how = describe_exit(code)
    if decision.restart:
        logger.warning(
            "%s exited (%s) after %.1f s; restart %d in %.1f s (%d exits in a row)",
            child.name,
            how,
            now - child.started_at,
            child.history.restarts,
            decision.delay,
            decision.exits_in_a_row,
        )
        child.restart_at = now + decision.delay
        return
    policy = child.history.policy
    logger.error(
        "%s exited (%s) %d times within %g s (START_LIMIT_BURST=%d, START_LIMIT_INTERVAL_SEC=%g): "
        "giving up on it%s",
        child.name,
        how,
        decision.exits_in_window,
        policy.start_limit_interval_sec,
        policy.start_limit_burst,
        policy.start_limit_interval_sec,
        "; the API keeps serving, with class activation maps instead of Grad-CAM"
        if child.name == "sidecar"
        else "",
    )
    child.given_up = True


def supervise(children: list[Child], env: Mapping[str, str], signals: list[int]) -> int:
    """Restart children that exit, until a signal arrives (-> stop both, 0) or the API is given up
    on (-> stop the sidecar, 1)."""
    announce = announce_when_ready(env)
    announced = False
    while True:
        if signals:
            logger.info("%s received: stopping", signal.Signals(signals[0]).name)
            return 0 if stop_children(running(children), signals) else 1
        now = time.monotonic()
        for child in children:
            if child.process is not None and (code := child.process.poll()) is not None:
                handle_exit(child, code, now)
                if child.given_up and child.name == "api":
                    stop_children(running(children), signals)
                    return 1
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                child.restart_at = None
                child.process, child.started_at = start_child(child.name, env), time.monotonic()
        if not announced and all(child.process is not None for child in children):
            announced = announce()
        time.sleep(POLL_SECONDS)


def running(children: list[Child]) -> dict[str, subprocess.Popen[bytes]]:
    return {child.name: child.process for child in children if child.process is not None}


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        policy = get_policy()
    except ValidationError as error:
        logger.error("invalid restart settings: %s", error)
        return 2
    signals: list[int] = []

    def record_signal(signum: int, _frame: object) -> None:
        signals.append(signum)

    signal.signal(signal.SIGINT, record_signal)
    signal.signal(signal.SIGTERM, record_signal)
    env = child_environment(os.environ)
    logger.info(
        "API on port %s, Grad-CAM sidecar at %s; restarts: %s",
        env.get("API_PORT", "8000"),
        env["GRADCAM_URL"],
        policy.model_dump(),
    )
    children = [Child(name, RestartHistory(policy)) for name in CHILDREN]
    try:
        for child in children:
            child.process, child.started_at = start_child(child.name, env), time.monotonic()
        return supervise(children, env, signals)
    finally:
        for process in running(children).values():  # only reached with a child running after an error
            if process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
