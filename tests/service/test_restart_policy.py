"""The launcher's restart decisions (service/restart_policy.py), without processes: the backoff
schedule, its reset after a long enough run, the give-up rule, the settings and the exit wording."""

import signal

import pytest
from pydantic import ValidationError

from service.restart_policy import RestartHistory, RestartPolicy, describe_exit, exits_within, restart_delay

DEFAULTS = RestartPolicy()


@pytest.mark.parametrize(
    ("exits_in_a_row", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (60, 30.0)]
)
def test_backoff_doubles_from_restart_sec_up_to_the_cap(exits_in_a_row: int, delay: float) -> None:
    assert restart_delay(DEFAULTS, exits_in_a_row) == delay


def test_defaults_are_systemd_like() -> None:
    assert (DEFAULTS.restart_sec, DEFAULTS.restart_max_delay_sec) == (1.0, 30.0)
    assert (DEFAULTS.start_limit_burst, DEFAULTS.start_limit_interval_sec) == (5, 120.0)
    assert DEFAULTS.restart_reset_sec == 60.0


def test_a_child_crashing_at_start_is_given_up_on_at_the_burst() -> None:
    history = RestartHistory(DEFAULTS)
    now, decisions = 0.0, []
    for _ in range(5):
        now += 3.0  # ran 3 s, crashed
        decision = history.record_exit(now, uptime=3.0)
        decisions.append(decision)
        now += decision.delay
    assert [d.restart for d in decisions] == [True, True, True, True, False]
    assert [d.delay for d in decisions[:4]] == [1.0, 2.0, 4.0, 8.0]
    assert decisions[-1].exits_in_window == 5
    assert history.restarts == 4


def test_exits_spread_wider_than_the_interval_are_restarted_for_ever() -> None:
    history = RestartHistory(DEFAULTS)
    for crash in range(1, 50):
        decision = history.record_exit(crash * 40.0, uptime=40.0)  # 3 exits per 120 s at most
        assert decision.restart, crash
        assert decision.exits_in_window <= 3
    assert decision.delay == 30.0  # never ran RESTART_RESET_SEC: still backing off


def test_a_long_run_resets_the_backoff() -> None:
    history = RestartHistory(DEFAULTS)
    assert history.record_exit(5.0, uptime=5.0).delay == 1.0
    assert history.record_exit(11.0, uptime=5.0).delay == 2.0
    after_long_run = history.record_exit(500.0, uptime=DEFAULTS.restart_reset_sec)
    assert (after_long_run.delay, after_long_run.exits_in_a_row) == (1.0, 1)
    assert after_long_run.exits_in_window == 1  # the earlier exits left the window


def test_a_burst_of_one_never_restarts() -> None:
    decision = RestartHistory(RestartPolicy(start_limit_burst=1)).record_exit(10.0, uptime=1.0)
    assert not decision.restart and decision.delay == 0.0


def test_exits_within_counts_the_window_only() -> None:
    assert exits_within([0.0, 50.0, 100.0, 119.0], now=120.0, interval=60.0) == 2
    assert exits_within([], now=5.0, interval=60.0) == 0


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTART_SEC", "0.5")
    monkeypatch.setenv("START_LIMIT_BURST", "3")
    policy = RestartPolicy()
    assert (policy.restart_sec, policy.start_limit_burst) == (0.5, 3)


@pytest.mark.parametrize(
    "values",
    [
        {"restart_sec": 0},
        {"start_limit_burst": 0},
        {"start_limit_interval_sec": -1},
        {"restart_sec": 10, "restart_max_delay_sec": 5},
    ],
)
def test_bad_settings_fail_fast(values: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        RestartPolicy(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("returncode", "text"),
    [(1, "exit code 1"), (0, "exit code 0"), (-signal.SIGKILL, "signal SIGKILL"), (-15, "signal SIGTERM")],
)
def test_describe_exit(returncode: int, text: str) -> None:
    assert describe_exit(returncode) == text
