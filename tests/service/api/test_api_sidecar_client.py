"""The Grad-CAM sidecar client: real refused and hanging connections, a protocol stub for
answers, and the circuit breaker between them."""

import asyncio
import time

import numpy as np
import pytest
from api_helpers import StubSidecar

from service.api.circuit_breaker import BreakerState, CircuitBreaker
from service.api.sidecar_client import SidecarClient, SidecarInstance, SidecarUnavailable

SHA = "a" * 64
TENSOR = np.zeros((32, 32, 3), np.float32)


def client_for(url: str, timeout: float = 2.0, threshold: int = 3, retry: float = 30.0) -> SidecarClient:
    return SidecarClient(url, timeout, CircuitBreaker(threshold, retry), SHA)


async def gradcam(client: SidecarClient, labels: list[str]) -> dict[str, np.ndarray]:
    try:
        return await client.gradcam(TENSOR, labels)
    finally:
        pass


def failure_of(client: SidecarClient, labels: list[str] | None = None) -> SidecarUnavailable:
    async def call() -> SidecarUnavailable:
        with pytest.raises(SidecarUnavailable) as raised:
            await client.gradcam(TENSOR, labels or ["Mass"])
        return raised.value

    return asyncio.run(call())


def test_refused_connection(closed_port_url: str) -> None:
    async def scenario() -> None:
        client = client_for(closed_port_url)
        with pytest.raises(SidecarUnavailable) as raised:
            await client.gradcam(TENSOR, ["Mass"])
        assert raised.value.reason == "refused"
        status = await client.status()
        assert not status.reachable and not status.ready
        await client.aclose()

    asyncio.run(scenario())


def test_hanging_sidecar_times_out_then_the_breaker_skips_it(hanging_url: str) -> None:
    async def scenario() -> None:
        client = client_for(hanging_url, timeout=0.3, threshold=2)
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises(SidecarUnavailable) as raised:
                await client.gradcam(TENSOR, ["Mass"])
            assert raised.value.reason == "timeout"
            assert 0.25 < time.monotonic() - started < 2.0
        assert client.breaker.state is BreakerState.OPEN
        started = time.monotonic()
        with pytest.raises(SidecarUnavailable) as raised:
            await client.gradcam(TENSOR, ["Mass"])
        assert raised.value.reason == "circuit_open"
        assert time.monotonic() - started < 0.05  # no waiting for a dead sidecar
        status = await client.status()
        assert status.reachable is False and "timed out" in status.detail
        await client.aclose()

    asyncio.run(scenario())


def test_maps_from_a_sidecar_serving_the_same_model() -> None:
    async def scenario(url: str) -> None:
        client = client_for(url)
        maps = await client.gradcam(TENSOR, ["Mass", "Effusion"])
        assert list(maps) == ["Mass", "Effusion"]
        for heatmap in maps.values():
            assert heatmap.shape == (4, 4) and heatmap.dtype == np.float32
            assert heatmap.min() == 0.0 and heatmap.max() == 1.0
        status = await client.status()
        assert status.reachable and status.ready and status.same_model
        await client.aclose()

    with StubSidecar(SHA) as stub:
        asyncio.run(scenario(stub.url))
        assert stub.gradcam_calls == 1


@pytest.mark.parametrize(
    ("mode", "sha", "reason"),
    [("ok", "b" * 64, "model_mismatch"), ("error", SHA, "http_error"), ("garbage", SHA, "bad_response")],
)
def test_unusable_answers(mode: str, sha: str, reason: str) -> None:
    with StubSidecar(sha) as stub:
        stub.mode = mode
        client = client_for(stub.url)
        assert failure_of(client).reason == reason
        if reason == "model_mismatch":
            assert stub.gradcam_calls == 0  # the maps of another model are never asked for

            async def status() -> bool | None:
                return (await client.status()).same_model

            assert asyncio.run(status()) is False


def test_breaker_recovers_when_the_sidecar_comes_back() -> None:
    with StubSidecar(SHA) as stub:
        stub.mode = "error"

        async def scenario() -> None:
            client = client_for(stub.url, threshold=1, retry=0.2)
            with pytest.raises(SidecarUnavailable):
                await client.gradcam(TENSOR, ["Mass"])
            with pytest.raises(SidecarUnavailable) as raised:
                await client.gradcam(TENSOR, ["Mass"])
            assert raised.value.reason == "circuit_open"
            stub.mode = "ok"
            await asyncio.sleep(0.25)
            maps = await client.gradcam(TENSOR, ["Mass"])  # the half-open trial succeeds
            assert "Mass" in maps and client.breaker.state is BreakerState.CLOSED
            await client.aclose()

        asyncio.run(scenario())
        assert stub.gradcam_calls == 2


def test_maps_differ_between_labels() -> None:
    async def scenario(url: str) -> dict[str, np.ndarray]:
        client = client_for(url)
        try:
            return await client.gradcam(TENSOR, ["Mass", "Effusion"])
        finally:
            await client.aclose()

    with StubSidecar(SHA) as stub:
        maps = asyncio.run(scenario(stub.url))
    assert not np.array_equal(maps["Mass"], maps["Effusion"])


def test_a_new_sidecar_instance_counts_as_a_restart() -> None:
    seen: list[SidecarInstance] = []

    async def scenario(stub: StubSidecar) -> None:
        client = SidecarClient(stub.url, 2.0, CircuitBreaker(3, 30.0), SHA, on_restart=seen.append)
        await client.status()
        await client.gradcam(TENSOR, ["Mass"])  # verifies /readyz again: the same instance
        assert (client.instance, client.restarts_seen) == (SidecarInstance("stub-1", 1.7e9), 0)
        stub.instance_id = "stub-2"
        await client.status()
        assert client.instance is not None and client.instance.id == "stub-2"
        assert client.restarts_seen == 1
        await client.status()  # the same new instance again: no second restart
        assert client.restarts_seen == 1
        await client.aclose()

    with StubSidecar(SHA) as stub:
        asyncio.run(scenario(stub))
    assert [instance.id for instance in seen] == ["stub-2"]
