"""The one thread that runs TensorFlow, with a bound on how many calls may wait for it.

Every TensorFlow call (import, model load, Grad-CAM) runs on this thread: requests are explained
one at a time, off the event loop, and never oversubscribe the cores TensorFlow was given.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.sidecar.errors import BusyError

T = TypeVar("T")


class TensorFlowWorker:
    def __init__(self, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tensorflow")
        self._max_pending = max_pending
        self._pending = 0

    async def run(self, function: Callable[[], T]) -> T:
        """Run `function` on the TensorFlow thread; BusyError when max_pending calls are already in."""
        if self._pending >= self._max_pending:
            raise BusyError(f"{self._pending} Grad-CAM requests are already running or queued")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        finally:
            self._pending -= 1

    async def load(self, function: Callable[[], T]) -> T:
        """Run a start-up step on the TensorFlow thread, outside the request bound."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
