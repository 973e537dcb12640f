"""Admission control: bounded running and queued predictions, immediate refusal beyond."""

import asyncio

import pytest

from service.api.admission import Admission, Overloaded


def test_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        Admission(0, 0)
    with pytest.raises(ValueError):
        Admission(1, -1)


def test_runs_queues_then_refuses_and_frees_slots() -> None:
    async def scenario() -> None:
        admission = Admission(max_running=1, max_queued=1)
        release = asyncio.Event()
        order: list[str] = []

        async def hold(name: str) -> None:
            async with admission.slot():
                order.append(name)
                await release.wait()

        first = asyncio.create_task(hold("first"))
        await asyncio.sleep(0)
        assert admission.running == 1 and admission.queued == 0
        second = asyncio.create_task(hold("second"))
        await asyncio.sleep(0)
        assert admission.running == 1 and admission.queued == 1
        assert admission.is_full()
        with pytest.raises(Overloaded, match="1 predictions running and 1 queued"):
            async with admission.slot():
                pass
        release.set()
        await asyncio.gather(first, second)
        assert order == ["first", "second"]
        assert admission.running == 0 and admission.queued == 0 and not admission.is_full()

    asyncio.run(scenario())


def test_no_queue_refuses_as_soon_as_slots_are_busy() -> None:
    async def scenario() -> None:
        admission = Admission(max_running=2, max_queued=0)
        async with admission.slot(), admission.slot():
            with pytest.raises(Overloaded):
                admission.check()
        admission.check()

    asyncio.run(scenario())


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def scenario() -> None:
        admission = Admission(max_running=1, max_queued=1)
        async with admission.slot():
            waiter = asyncio.create_task(admission.slot().__aenter__())
            await asyncio.sleep(0)
            assert admission.queued == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert admission.queued == 0
        assert admission.running == 0

    asyncio.run(scenario())
