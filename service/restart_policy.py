"""When the launcher (service/run.py) restarts a child that exited, and when it gives up on it.

Pure decisions, no processes: a `RestartPolicy` (systemd's unit settings, read from environment
variables of the same spirit) and a `RestartHistory` per child that turns each exit into a
`Decision`. Any exit the launcher did not ask for counts (a crash, a signal, even exit 0):
the launcher's job is to keep both children serving, as `Restart=always` would.

    RESTART_SEC               1    wait before the first restart; doubles with each exit in a row
    RESTART_MAX_DELAY_SEC     30   the longest wait
    RESTART_RESET_SEC         60   a child that ran this long before it exited starts afresh (wait
                                   RESTART_SEC again)
    START_LIMIT_BURST         5    give up on a child once it exited this many times ...
    START_LIMIT_INTERVAL_SEC  120  ... within this many seconds
"""

import signal
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class RestartPolicy(BaseSettings):
    """The launcher's restart settings (environment variables, upper case)."""

    model_config = SettingsConfigDict(frozen=True)

    restart_sec: float = Field(default=1.0, gt=0, description="First wait before a restart.")
    restart_max_delay_sec: float = Field(default=30.0, gt=0, description="Longest wait before a restart.")
    restart_reset_sec: float = Field(
        default=60.0, gt=0, description="Uptime after which an exit counts as the first in a row again."
    )
    start_limit_burst: int = Field(default=5, ge=1, description="Exits within the interval that end retries.")
    start_limit_interval_sec: float = Field(default=120.0, gt=0, description="The burst's window.")

    @model_validator(mode="after")
    def _max_not_below_first(self) -> "RestartPolicy":
        if self.restart_max_delay_sec < self.restart_sec:
            raise ValueError("RESTART_MAX_DELAY_SEC must be at least RESTART_SEC")
        return self


@lru_cache
def get_policy() -> RestartPolicy:
    return RestartPolicy()


def restart_delay(policy: RestartPolicy, exits_in_a_row: int) -> float:
    """Seconds to wait before restarting after the `exits_in_a_row`-th exit (1, 2, ...) in a row:
    RESTART_SEC doubling each time, at most RESTART_MAX_DELAY_SEC."""
    doublings = min(max(exits_in_a_row - 1, 0), 32)  # 2**32 s is past any cap; avoids huge floats
    return float(min(policy.restart_sec * 2.0**doublings, policy.restart_max_delay_sec))


def exits_within(exit_times: Iterable[float], now: float, interval: float) -> int:
    """How many of `exit_times` (monotonic seconds) fall within the last `interval` seconds."""
    return sum(1 for at in exit_times if now - at < interval)


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float  # seconds until the restart (0 when giving up)
    exits_in_a_row: int
    exits_in_window: int


class RestartHistory:
    """One child's exits, turned into decisions by `policy`."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.restarts = 0
        self.exits_in_a_row = 0
        self._exit_times: deque[float] = deque()

    def record_exit(self, now: float, uptime: float) -> Decision:
        """The child exited at `now` after running `uptime` seconds: restart (after how long) or give up."""
        policy = self.policy
        self.exits_in_a_row = 1 if uptime >= policy.restart_reset_sec else self.exits_in_a_row + 1
        self._exit_times.append(now)
        while self._exit_times and now - self._exit_times[0] >= policy.start_limit_interval_sec:
            self._exit_times.popleft()
        in_window = exits_within(self._exit_times, now, policy.start_limit_interval_sec)
        if in_window >= policy.start_limit_burst:
            return Decision(False, 0.0, self.exits_in_a_row, in_window)
        self.restarts += 1
        return Decision(True, restart_delay(policy, self.exits_in_a_row), self.exits_in_a_row, in_window)


def describe_exit(returncode: int) -> str:
    """'exit code 1' or 'signal SIGKILL' (Popen's negative return code)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"
