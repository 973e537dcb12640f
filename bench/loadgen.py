"""Closed-loop HTTP load with aiohttp + asyncio: N clients posting back to back for a duration."""

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    field_counts: dict[str, int] = field(default_factory=dict)  # values of `count_field` in the answers
    client_cpu_seconds: float = 0.0  # this process's CPU (the load generator's) while it ran

    @property
    def client_cpu_ms_per_request(self) -> float | None:
        answered = self.ok + self.failures
        return self.client_cpu_seconds * 1000.0 / answered if answered else None

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def failures(self) -> int:
        return sum(self.errors.values())

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def summary(self) -> dict[str, object]:
        return {
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 2),
            "requests_ok": self.ok,
            "failures": self.failures,
            "errors": self.errors,
            "throughput_rps": round(self.throughput, 3),
            "p50_ms": _round(self.percentile(50)),
            "p95_ms": _round(self.percentile(95)),
            "p99_ms": _round(self.percentile(99)),
            "client_cpu_ms_per_request": _round(self.client_cpu_ms_per_request),
            **({"field_counts": self.field_counts} if self.field_counts else {}),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def _run(
    url: str,
    image: bytes,
    filename: str,
    *,
    concurrency: int,
    duration: float | None,
    requests: int | None,
    warmup: int,
    headers: dict[str, str],
    params: dict[str, str],
    count_field: str | None,
) -> LoadResult:
    # aiohttp rather than httpx: the load generator shares the cores it measures, and aiohttp's client
    # takes less CPU per request (the result carries the figure; make bench prints it).
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120.0)
    # The multipart body is encoded once: every request sends the same bytes.
    form = aiohttp.FormData()
    form.add_field("file", image, filename=filename, content_type="image/png")
    multipart = form()
    request_body = await multipart.as_bytes()
    headers = {**headers, "Content-Type": multipart.content_type}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as client:
        counts: dict[str, int] = {}

        async def once() -> tuple[float, str | None]:
            started = time.perf_counter()
            value = None
            try:
                async with client.post(url, params=params, data=request_body) as response:
                    answer = await response.read()
                    error = None if response.status == 200 else f"HTTP {response.status}"
                    if error is None and count_field is not None:
                        value = str(json.loads(answer).get(count_field))
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = type(exc).__name__
            elapsed = (time.perf_counter() - started) * 1000.0
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
            return elapsed, error

        for _ in range(warmup):
            await once()
        counts.clear()
        result = LoadResult(concurrency, 0.0, field_counts=counts)
        remaining = [requests] if requests is not None else None
        started, cpu_started = time.perf_counter(), time.process_time()
        deadline = started + duration if duration is not None else None

        async def client_loop() -> None:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if remaining is not None:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                latency, error = await once()
                if error is None:
                    result.latencies_ms.append(latency)
                else:
                    result.errors[error] = result.errors.get(error, 0) + 1

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
        result.client_cpu_seconds = time.process_time() - cpu_started
        return result


def run_load(
    url: str,
    image: bytes,
    filename: str = "image.png",
    *,
    concurrency: int = 1,
    duration: float | None = None,
    requests: int | None = None,
    warmup: int = 2,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    count_field: str | None = None,
) -> LoadResult:
    """POST `image` as multipart field `file` to `url` from `concurrency` clients, each sending its next
    request when the previous answer arrives, for `duration` seconds or `requests` requests in all."""
    if duration is None and requests is None:
        raise ValueError("give a duration or a number of requests")
    return asyncio.run(
        _run(
            url,
            image,
            filename,
            concurrency=concurrency,
            duration=duration,
            requests=requests,
            warmup=warmup,
            headers=headers or {},
            params=params or {},
            count_field=count_field,
        )
    )


def merge(results: list[LoadResult]) -> LoadResult:
    """One result from several runs of the same load (latencies pooled, seconds added)."""
    merged = LoadResult(results[0].concurrency, sum(result.seconds for result in results))
    merged.client_cpu_seconds = sum(result.client_cpu_seconds for result in results)
    for result in results:
        merged.latencies_ms += result.latencies_ms
        for key, count in result.errors.items():
            merged.errors[key] = merged.errors.get(key, 0) + count
        for key, count in result.field_counts.items():
            merged.field_counts[key] = merged.field_counts.get(key, 0) + count
    return merged
