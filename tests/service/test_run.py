"""`python -m service.run` (make run) without processes: the children's environment and what the
launcher does with a child's exit. The launcher's children are killed for real (and Ctrl-C
stops them) in tests/reliability/test_launcher.py."""

import logging

import pytest

from service.restart_policy import RestartHistory, RestartPolicy
from service.run import Child, child_environment, handle_exit


def test_child_environment_points_the_api_at_the_sidecar() -> None:
    assert child_environment({"GRADCAM_PORT": "9001"})["GRADCAM_URL"] == "http://127.0.0.1:9001"
    assert child_environment({"GRADCAM_HOST": "0.0.0.0"})["GRADCAM_URL"] == "http://127.0.0.1:8001"
    assert child_environment({"MODEL_DIR": "m"})["MODEL_DIR"] == "m"


def test_an_exit_schedules_a_restart_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    child = Child("sidecar", RestartHistory(RestartPolicy()), started_at=100.0)
    with caplog.at_level(logging.WARNING, logger="service.run"):
        handle_exit(child, -9, now=130.0)
    assert child.restart_at == 131.0 and not child.given_up and child.process is None
    assert "sidecar exited (signal SIGKILL) after 30.0 s; restart 1 in 1.0 s" in caplog.text


def test_a_burst_of_exits_gives_up_with_one_error(caplog: pytest.LogCaptureFixture) -> None:
    child = Child("sidecar", RestartHistory(RestartPolicy(start_limit_burst=2)), started_at=0.0)
    handle_exit(child, 1, now=2.0)
    child.started_at = 3.0
    with caplog.at_level(logging.ERROR, logger="service.run"):
        handle_exit(child, 1, now=5.0)
    assert child.given_up
    assert [r.levelname for r in caplog.records if r.levelname == "ERROR"] == ["ERROR"]
    assert "sidecar exited (exit code 1) 2 times within 120 s" in caplog.text
    assert "the API keeps serving" in caplog.text
