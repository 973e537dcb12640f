"""Admission control: at most `max_running` predictions run, at most `max_queued` wait.

A request over both bounds is refused at once (`Overloaded` -> 503 + Retry-After) rather than
left to pile up: under overload clients learn it immediately and can retry elsewhere. Runs on
the event loop only, so the counters need no lock (no await between check and update).
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Overloaded(Exception):
    """Every inference slot is busy and the queue is full."""


class Admission:
    def __init__(self, max_running: int, max_queued: int) -> None:
        if max_running < 1 or max_queued < 0:
            raise ValueError("max_running must be >= 1 and max_queued >= 0")
        self.max_running = max_running
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_running)
        self._running = 0
        self._queued = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return self._queued

    def is_full(self) -> bool:
        """True when a new request would be refused right now."""
        return self._running >= self.max_running and self._queued >= self.max_queued

    def check(self) -> None:
        if self.is_full():
            raise Overloaded(
                f"{self._running} predictions running and {self._queued} queued (limits "
                f"{self.max_running} and {self.max_queued}); retry shortly"
            )

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one inference slot, waiting in the bounded queue if all are busy."""
        self.check()
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._slots.release()
