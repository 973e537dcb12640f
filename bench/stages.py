"""Where one request's CPU time goes: each stage of /v1/predict in this process, against the CPU the
real API process spends per request. CPU time, not wall time, so the table holds on a busy machine.

    .venv/bin/python -m bench.stages [--image tests/fixtures/00000001_000.png] [--repeats 40]

In-process, each stage runs on its own input, repeated, through the service's own functions:
multipart parsing (read_prediction_request on a body encoded by httpx), decode, the
out-of-distribution guard, preprocessing, onnxruntime (process CPU: its pool threads count, and
so does their spinning) and the response (findings, the response model, FastAPI's JSON). The
real API (`python -m service.api`, started here unless given) answers `--repeats` requests one at
a time; its CPU per request (/proc/PID/stat, all threads) less the stages is the rest: the HTTP
server, routing, middleware and the hops to worker threads (onnxruntime's pool stops spinning when
a run returns); the event loop thread's own CPU is reported beside it. CPU time holds while other
processes load the machine, not while a shared host slows the machine itself (then every stage
costs more CPU, by different amounts: `make bench`'s speed probe shows it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.procs import REPO, Service

PREDICT = "/v1/predict"


def thread_cpu_ms(call: Callable[[], object], repeats: int, warm_up: int = 2) -> float:
    """Median CPU time (this thread only) of one call, ms."""
    for _ in range(warm_up):
        call()
    times = []
    for _ in range(repeats):
        started = time.thread_time()
        call()
        times.append(time.thread_time() - started)
    return statistics.median(times) * 1000.0


def process_cpu_ms(call: Callable[[], object], repeats: int, warm_up: int = 2) -> float:
    """Mean CPU time of the whole process (every thread) per call, ms."""
    for _ in range(warm_up):
        call()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    for _ in range(repeats):
        call()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime - before) * 1000.0 / repeats


def pid_cpu_seconds(pid: int, thread: int | None = None) -> float:
    """utime + stime of a process, all its threads (/proc/PID/stat fields 14 and 15), or of one
    of its threads (/proc/PID/task/TID/stat)."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def multipart_body(image: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    request = httpx.Request(
        "POST", "http://bench" + PREDICT, files={"file": ("image.png", image, "image/png")}
    )
    return request.read(), [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]


def in_process_stages(settings: Any, image: bytes, repeats: int) -> dict[str, float]:
    """CPU ms of each stage, with the runtime the API's settings give."""
    from fastapi.responses import JSONResponse
    from starlette.requests import Request

    from cxr.imaging import decode_image
    from cxr.labels import LABELS
    from service.api.lifecycle import load_from_settings
    from service.api.ood import out_of_distribution_reasons
    from service.api.prediction import findings_of
    from service.api.request_parsing import QueryOptions, read_prediction_request
    from service.api.schemas import ModelInfo, PredictResponse

    runtime = load_from_settings(settings)
    body, headers = multipart_body(image)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": PREDICT, "headers": headers, "query_string": b""}
    loop = asyncio.new_event_loop()

    def parse() -> object:
        request = Request(scope, receive)
        return loop.run_until_complete(read_prediction_request(request, QueryOptions(None, None, None)))

    decoded = decode_image(image)
    tensor = runtime.preprocess(decoded.pixels)
    probabilities = runtime.predict(tensor).probabilities
    card = runtime.card

    def respond() -> bytes:
        response = PredictResponse(
            probabilities={label: float(p) for label, p in zip(LABELS, probabilities, strict=True)},
            findings=findings_of(probabilities, card.thresholds),
            heatmaps={},
            heatmap_engine=None,
            model=ModelInfo(
                name=card.name, version=card.version, sha256=card.sha256, precision=runtime.precision
            ),
            request_id="0" * 32,
            warnings=[],
        )
        return bytes(JSONResponse(response.model_dump(mode="json")).body)

    try:
        return {
            "multipart parsing": thread_cpu_ms(parse, repeats),
            "decode": thread_cpu_ms(lambda: decode_image(image), repeats),
            "out-of-distribution guard": thread_cpu_ms(lambda: out_of_distribution_reasons(decoded), repeats),
            "preprocess": thread_cpu_ms(lambda: runtime.preprocess(decoded.pixels), repeats),
            "inference (process CPU)": process_cpu_ms(lambda: runtime.predict(tensor), repeats),
            "response and JSON": thread_cpu_ms(respond, repeats),
        }
    finally:
        loop.close()


def api_cpu_per_request_ms(api: Service, image: bytes, requests: int) -> tuple[float, float]:
    """CPU the API process spends per /v1/predict (probabilities only), one request at a time:
    (all threads, the event loop's thread alone). The event loop runs the HTTP server, routing,
    middleware, multipart parsing and the response; worker threads decode, check, preprocess and
    call onnxruntime, whose pool threads do the rest of the inference."""
    pid = api.process.pid
    with httpx.Client(base_url=api.url, timeout=120.0) as client:

        def post() -> None:
            response = client.post(
                PREDICT, params={"heatmaps": "none"}, files={"file": ("image.png", image, "image/png")}
            )
            response.raise_for_status()

        for _ in range(3):
            post()
        before, loop_before = pid_cpu_seconds(pid), pid_cpu_seconds(pid, pid)
        for _ in range(requests):
            post()
        whole, loop = pid_cpu_seconds(pid) - before, pid_cpu_seconds(pid, pid) - loop_before
        return whole * 1000.0 / requests, loop * 1000.0 / requests


def stage_table(api: Service, settings: Any, image: bytes, repeats: int) -> dict[str, Any]:
    stages = in_process_stages(settings, image, repeats)
    whole, loop = api_cpu_per_request_ms(api, image, repeats)
    rest = whole - sum(stages.values())
    return {
        "cpu_ms": {name: round(value, 2) for name, value in stages.items()},
        "api_process_cpu_ms_per_request": round(whole, 2),
        "api_event_loop_thread_cpu_ms_per_request": round(loop, 2),
        "rest_cpu_ms": round(rest, 2),
        "repeats": repeats,
    }


def format_table(table: dict[str, Any]) -> list[str]:
    whole = table["api_process_cpu_ms_per_request"]
    lines = [f"CPU per request, probabilities only (ms; share of the API process's {whole:.1f} ms):"]
    for name, value in [
        *table["cpu_ms"].items(),
        ("rest: HTTP, thread hops", table["rest_cpu_ms"]),
    ]:
        share = f"{value / whole:6.0%}" if whole else "     -"
        lines.append(f"  {name:<46} {value:7.2f}  {share}")
    loop = table["api_event_loop_thread_cpu_ms_per_request"]
    lines.append(
        f"  of the API's CPU, its event loop thread (HTTP server, routing, middleware, multipart, "
        f"response): {loop:.2f} ms"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    from bench.services import api_settings, start_api

    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--image", type=Path, default=REPO / "tests" / "fixtures" / "00000001_000.png")
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args(argv)
    image = args.image.read_bytes()
    with tempfile.TemporaryDirectory(prefix="cxr-stages-") as logs:
        api = start_api(args.model_dir, args.onnx_dir, "http://127.0.0.1:9", Path(logs))
        try:
            table = stage_table(
                api, api_settings(args.model_dir, args.onnx_dir, "http://127.0.0.1:9"), image, args.repeats
            )
        finally:
            api.stop()
    print(f"{args.image.name}, {args.repeats} repeats; load average {os.getloadavg()[0]:.2f}")
    print("\n".join(format_table(table)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
