"""`python -m service.run` (make run): the Grad-CAM sidecar and the API as two child processes.

Runs in the foreground and logs to stdout (the children's output too). Ctrl-C or SIGTERM is
forwarded to both children (as SIGTERM), which then shut down gracefully; if either child exits
on its own, the other is stopped and run exits non-zero. API_PORT and GRADCAM_PORT choose the
ports; the API is told where the sidecar is through GRADCAM_URL. MODEL_DIR, ONNX_DIR and the rest
of the environment pass through unchanged.
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

logger = logging.getLogger("service.run")

CHILDREN = {"sidecar": "service.sidecar", "api": "service.api"}
POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 20.0
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


def supervise(children: dict[str, subprocess.Popen[bytes]], signals: list[int]) -> int:
    """Wait until a signal arrives (-> stop both, 0) or a child exits (-> stop the other, non-zero)."""
    while True:
        if signals:
            logger.info("%s received: stopping", signal.Signals(signals[0]).name)
            return 0 if stop_children(children, signals) else 1
        for name, process in children.items():
            code = process.poll()
            if code is not None:
                logger.error("%s exited with %s; stopping the others", name, code)
                others = {other: child for other, child in children.items() if other != name}
                stop_children(others, signals)
                return code if code > 0 else 1
        time.sleep(POLL_SECONDS)


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    signals: list[int] = []

    def record_signal(signum: int, _frame: object) -> None:
        signals.append(signum)

    signal.signal(signal.SIGINT, record_signal)
    signal.signal(signal.SIGTERM, record_signal)
    env = child_environment(os.environ)
    logger.info("API on port %s, Grad-CAM sidecar at %s", env.get("API_PORT", "8000"), env["GRADCAM_URL"])
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name in CHILDREN:
            children[name] = start_child(name, env)
        return supervise(children, signals)
    finally:
        for process in children.values():  # only reached with a child running after an error in run
            if process.poll() is None:
                process.kill()
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
