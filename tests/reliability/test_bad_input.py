"""Bad input against a REAL API process over HTTP: every bad file, body, part or parameter gets
the right 4xx application/problem+json, and the process stays healthy (GET /healthz 200, a real
radiograph still classified) with its memory (VmRSS) bounded after all of them.

Beyond the table: an oversize body refused while it streams (413 after the first megabytes of a
100 MB upload, RSS not grown by the body), a stalled upload answered 408 within
REQUEST_TIMEOUT_SECONDS without holding an inference slot, a client hanging up mid-body (not a
5xx), hypothesis fuzzing of the HTTP surface and schemathesis against /openapi.json.
The decoders themselves are fuzzed in tests/cxr/test_imaging.py.
"""

import base64
import io
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from dicom_factory import dataset_bytes, make_dataset, make_dicom
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from reliability_helpers import (
    RADIOGRAPH,
    Api,
    RawAnswer,
    assert_problem,
    png_bytes,
    read_answer,
    record,
    running_api,
    summarise,
)

pytestmark = pytest.mark.slow

SUITE = "bad_input"
MAX_BODY_BYTES = 4 * 1024 * 1024
REQUEST_TIMEOUT_SECONDS = 15.0
REPEATS = 3  # each bad input is sent this many times (memory growth shows over repeats)
# After everything. Worker threads coming and going make glibc's malloc add an arena now and then
# (a one-off step of ~12 MiB seen around the stalled uploads' concurrent prediction), so this only
# bounds gross growth, e.g. a buffered upload; a leak per request would show over the table.
RSS_GROWTH_BOUND_KB = 48 * 1024
TABLE_GROWTH_BOUND_KB = 8 * 1024  # over the repeated table alone (141 bad requests after a warm-up pass)
FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "60"))
SCHEMATHESIS_EXAMPLES = int(os.environ.get("RELIABILITY_SCHEMATHESIS_EXAMPLES", "15"))
BIG_UPLOAD_BYTES = 100 * 1024 * 1024
WARM_UP_DICOM_ATTEMPTS = 4
STALLED_UPLOADS = 4  # more than the inference slots + queue below, to show they hold none

_rng = np.random.default_rng(7)
_NOISE = (_rng.random((64, 64)) * 255).astype(np.uint8)


# --- inputs ------------------------------------------------------------------------------------


def encoded(array: np.ndarray, format_name: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format_name, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 40_000) -> bytes:
    """A valid-looking PNG whose header claims side x side 8-bit grey pixels (a few hundred bytes)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * (side + 1) * 4)  # the first rows only
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb(side: int = 65_000) -> bytes:
    """A small JPEG whose start-of-frame claims side x side pixels."""
    data = bytearray(encoded(_NOISE, "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def dicom_without_pixels() -> bytes:
    dataset = make_dataset((_NOISE.astype(np.uint16) * 16), 12)
    del dataset.PixelData
    return dataset_bytes(dataset)


def dicom_truncated() -> bytes:
    data = make_dicom(_NOISE.astype(np.uint16) * 16, 12)
    return data[: len(data) - 3000]


def dicom_garbage() -> bytes:
    return b"\0" * 128 + b"DICM" + bytes(_rng.integers(0, 256, 600, dtype=np.uint8))


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "cxr-boundary") -> bytes:
    """A multipart/form-data body of (name, filename or None, content) parts, closed properly."""
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


MULTIPART = "multipart/form-data; boundary=cxr-boundary"
# The start of a `file` part whose content follows (and never ends, in the streaming tests).
FILE_PART_HEAD = (
    b'--cxr-boundary\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n"
)
JSON = "application/json"


@dataclass(frozen=True)
class BadInput:
    """One bad request: body, Content-Type and query string, and the problem it must get."""

    name: str
    status: int
    slug: str
    body: bytes | Callable[[], bytes] = b""
    content_type: str | None = MULTIPART
    query: str = ""
    method: str = "POST"
    path: str = "/v1/predict"
    extra_headers: dict[str, str] = field(default_factory=dict)

    def request(self, client: httpx.Client) -> httpx.Response:
        body = self.body() if callable(self.body) else self.body
        headers = dict(self.extra_headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        content = body if self.method == "POST" else None
        return client.request(self.method, f"{self.path}{self.query}", content=content, headers=headers)


def file_part(data: bytes | Callable[[], bytes], filename: str = "chest.png") -> Callable[[], bytes]:
    """The multipart body of one `file` part holding `data` (built when sent)."""
    return lambda: multipart([("file", filename, data() if callable(data) else data)])


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def radiograph() -> bytes:
    return RADIOGRAPH.read_bytes()


def radiograph_b64() -> str:
    return base64.b64encode(RADIOGRAPH.read_bytes()).decode()


BAD_INPUTS = [
    # Not an image, or not a whole one.
    BadInput("empty file part", 415, "unsupported-image", file_part(b"")),
    BadInput("empty body (multipart)", 400, "malformed-request", b""),
    BadInput("empty body (JSON)", 400, "malformed-request", b"", JSON),
    BadInput("empty body, no Content-Type", 415, "unsupported-content-type", b"", None),
    BadInput(
        "text file named .png", 415, "unsupported-image", file_part(b"Patient notes: not an image\n" * 20)
    ),
    BadInput(
        "truncated PNG", 415, "corrupt-image", file_part(lambda: radiograph()[: len(radiograph()) // 2])
    ),
    BadInput("PNG signature only", 415, "corrupt-image", file_part(b"\x89PNG\r\n\x1a\n")),
    BadInput(
        "truncated JPEG",
        415,
        "corrupt-image",
        file_part(lambda: encoded(_NOISE, "JPEG")[: len(encoded(_NOISE, "JPEG")) // 2], "chest.jpg"),
    ),
    BadInput("PNG bomb (header 40000x40000)", 413, "image-too-large", file_part(png_bomb)),
    BadInput("JPEG bomb (header 65000x65000)", 413, "image-too-large", file_part(jpeg_bomb, "chest.jpg")),
    BadInput("1x1 PNG", 422, "image-shape", file_part(lambda: png_bytes(np.zeros((1, 1), np.uint8)))),
    BadInput(
        "elongated PNG 4000x40",
        422,
        "image-shape",
        file_part(lambda: png_bytes(np.zeros((40, 4000), np.uint8))),
    ),
    BadInput(
        "elongated PNG 32x2000",
        422,
        "image-shape",
        file_part(lambda: png_bytes(np.zeros((2000, 32), np.uint8))),
    ),
    # Other formats.
    BadInput("GIF", 415, "unsupported-image", file_part(lambda: encoded(_NOISE, "GIF"), "chest.gif")),
    BadInput("TIFF", 415, "unsupported-image", file_part(lambda: encoded(_NOISE, "TIFF"), "chest.tif")),
    BadInput("WebP", 415, "unsupported-image", file_part(lambda: encoded(_NOISE, "WEBP"), "chest.webp")),
    BadInput("BMP", 415, "unsupported-image", file_part(lambda: encoded(_NOISE, "BMP"), "chest.bmp")),
    BadInput(
        "PDF",
        415,
        "unsupported-image",
        file_part(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "chest.pdf"),
    ),
    # Multipart trouble.
    BadInput(
        "wrong multipart field",
        400,
        "malformed-request",
        lambda: multipart([("image", "a.png", radiograph())]),
    ),
    BadInput(
        "two files",
        400,
        "malformed-request",
        lambda: multipart([("file", "a.png", radiograph()), ("file", "b.png", radiograph())]),
    ),
    BadInput(
        "file sent as a text field", 400, "malformed-request", lambda: multipart([("file", None, b"abc")])
    ),
    BadInput(
        "option as a form field",
        400,
        "malformed-request",
        lambda: multipart([("file", "a.png", radiograph()), ("heatmaps", None, b"all")]),
    ),
    BadInput(
        "broken multipart (no closing boundary)",
        400,
        "malformed-request",
        lambda: multipart([("file", "a.png", b"abc")])[: -len("\r\n--cxr-boundary--\r\n")],
    ),
    BadInput(
        "multipart without boundary", 400, "malformed-request", file_part(b"abc"), "multipart/form-data"
    ),
    BadInput("multipart garbage", 400, "malformed-request", b"\x00\xff" * 500),
    # DICOM trouble.
    BadInput("corrupt DICOM", 415, "corrupt-image", file_part(dicom_garbage, "chest.dcm")),
    BadInput("truncated DICOM", 415, "corrupt-image", file_part(dicom_truncated, "chest.dcm")),
    BadInput(
        "DICOM without pixel data", 415, "unsupported-image", file_part(dicom_without_pixels, "chest.dcm")
    ),
    BadInput(
        "RGB DICOM",
        415,
        "unsupported-image",
        file_part(lambda: make_dicom(np.stack([_NOISE] * 3, axis=-1), 8, photometric="RGB"), "chest.dcm"),
    ),
    # Parameters.
    BadInput(
        "unknown heatmaps value",
        422,
        "invalid-heatmap-parameters",
        file_part(radiograph),
        query="?heatmaps=bogus",
    ),
    BadInput(
        "heatmaps top:99", 422, "invalid-heatmap-parameters", file_part(radiograph), query="?heatmaps=top:99"
    ),
    BadInput(
        "unknown heatmap_style",
        422,
        "invalid-parameters",
        file_part(radiograph),
        query="?heatmap_style=sepia",
    ),
    BadInput(
        "heatmap_size not a number",
        422,
        "invalid-parameters",
        file_part(radiograph),
        query="?heatmap_size=big",
    ),
    BadInput(
        "heatmap_size too small", 422, "invalid-parameters", file_part(radiograph), query="?heatmap_size=2"
    ),
    BadInput(
        "heatmap_size too large",
        422,
        "invalid-parameters",
        file_part(radiograph),
        query="?heatmap_size=99999",
    ),
    BadInput(
        "heatmap_size over the image's own size",
        422,
        "invalid-heatmap-parameters",
        file_part(lambda: png_bytes(np.full((64, 64), 128, np.uint8))),
        query="?heatmaps=all&heatmap_size=512",
    ),
    # JSON bodies.
    BadInput("not JSON", 400, "malformed-request", b"{not json", JSON),
    BadInput("deeply nested JSON", 400, "malformed-request", b"[" * 100_000 + b"]" * 100_000, JSON),
    BadInput("JSON array", 400, "malformed-request", json_body([1, 2, 3]), JSON),
    BadInput("JSON without image_base64", 400, "malformed-request", json_body({"heatmaps": "all"}), JSON),
    BadInput(
        "image_base64 not base64", 400, "malformed-request", json_body({"image_base64": "not base64!"}), JSON
    ),
    BadInput(
        "image_base64 of a text",
        415,
        "unsupported-image",
        json_body({"image_base64": "SGVsbG8sIG5vdCBhbiBpbWFnZQ=="}),
        JSON,
    ),
    BadInput(
        "JSON heatmap_size of a wrong type",
        422,
        "invalid-parameters",
        lambda: json_body({"image_base64": radiograph_b64(), "heatmap_size": "large"}),
        JSON,
    ),
    BadInput(
        "JSON and query disagree",
        422,
        "invalid-parameters",
        lambda: json_body({"image_base64": radiograph_b64(), "heatmaps": "all"}),
        JSON,
        query="?heatmaps=none",
    ),
    # Request shape.
    BadInput("text/plain body", 415, "unsupported-content-type", b"hello", "text/plain"),
    BadInput("GET /v1/predict", 405, "method-not-allowed", method="GET", content_type=None),
    BadInput("unknown path", 404, "not-found", path="/v1/nothing-here", content_type=None, method="GET"),
]


# --- the API under test --------------------------------------------------------------------------


@dataclass
class Session:
    api: Api
    baseline_rss_kb: int = 0
    warm_up_server_errors: int = 0
    tried: dict[str, int] = field(default_factory=dict)
    rss_trace_kb: list[tuple[str, int]] = field(default_factory=list)

    def count(self, what: str, n: int = 1) -> None:
        self.tried[what] = self.tried.get(what, 0) + n


@pytest.fixture(scope="module")
def session(model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """One API (1 inference slot, 2 queued) taken through one warm-up pass of everything below,
    so that the memory baseline includes lazy imports (pydicom) and allocator growth."""
    with running_api(
        model_dir,
        onnx_dir,
        tmp_path_factory.mktemp("bad-input-api"),
        MAX_BODY_BYTES=MAX_BODY_BYTES,
        REQUEST_TIMEOUT_SECONDS=REQUEST_TIMEOUT_SECONDS,
        MAX_CONCURRENT_INFERENCES=1,
        MAX_QUEUED_REQUESTS=2,
    ) as api:
        for _ in range(3):
            api.assert_healthy()
        good_dicom = make_dicom((np.asarray(Image.open(RADIOGRAPH).convert("L").resize((256, 256)))), 8)
        for _ in range(WARM_UP_DICOM_ATTEMPTS):
            # The first DICOM imports pydicom in the request (1.5 s of CPU, more on a busy machine),
            # which may pass REQUEST_TIMEOUT_SECONDS: a 503 timeout, counted as a warm-up 5xx.
            response = api.client.post("/v1/predict?heatmaps=top:2", files={"file": ("x.dcm", good_dicom)})
            if response.status_code == 200:
                break
            assert_problem(response, 503)
        assert response.status_code == 200, response.text
        for bad in BAD_INPUTS:
            bad.request(api.client)
        concurrent_predictions(api, clients=3, each=5)  # worker threads and their malloc arenas
        state = Session(api, baseline_rss_kb=api.rss_kb(), warm_up_server_errors=api.server_errors())
        yield state
        record(
            SUITE,
            bad_inputs_tried=state.tried,
            total_bad_requests=sum(state.tried.values()),
            rss_trace_kb=state.rss_trace_kb,
        )


@pytest.fixture(autouse=True)
def trace_memory(session: Session, request: pytest.FixtureRequest) -> Iterator[None]:
    """VmRSS after each test, to show where memory grows, if it does."""
    yield
    if session.api.alive():
        session.rss_trace_kb.append((request.node.name, session.api.rss_kb()))


def concurrent_predictions(api: Api, clients: int, each: int) -> None:
    def client() -> None:
        with httpx.Client(base_url=api.base_url, timeout=120.0) as http:
            for _ in range(each):
                response = http.post("/v1/predict?heatmaps=top:2", files={"file": ("x.png", radiograph())})
                assert response.status_code in (200, 503), response.text

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def assert_still_healthy(api: Api) -> None:
    assert api.alive(), api.service.log_tail()
    assert api.client.get("/healthz").status_code == 200


# --- the table -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[bad.name for bad in BAD_INPUTS])
def test_bad_input_gets_its_problem(session: Session, bad: BadInput) -> None:
    for _ in range(REPEATS):
        response = bad.request(session.api.client)
        body = assert_problem(response, bad.status)
        assert body["type"] == f"urn:cxr:problem:{bad.slug}", body
        assert response.headers.get("x-content-type-options") == "nosniff"
    session.count("table", REPEATS)
    assert_still_healthy(session.api)


# --- streaming limits ---------------------------------------------------------------------------


def raw_connection(api: Api) -> socket.socket:
    host, port = api.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def request_head(content_type: str, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/predict HTTP/1.1\r\nHost: cxr\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n"
    ).encode()


def upload_until_answered(api: Api, content_type: str, first: bytes, piece: int = 1 << 20) -> RawAnswer:
    """Stream a 100 MB chunked body, one 1 MiB chunk at a time, stopping as soon as the server
    answers (or stops the connection); the answer and how many body bytes were sent."""
    sock = raw_connection(api)
    started = time.monotonic()
    sent = 0
    try:
        sock.sendall(request_head(content_type))
        filler = b"x" * piece
        while sent < BIG_UPLOAD_BYTES:
            data = first if sent == 0 else filler
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(data)
        return read_answer(sock, started, sent, timeout=30)
    finally:
        sock.close()


@pytest.mark.parametrize("content_type", [MULTIPART, JSON], ids=["multipart", "json"])
def test_a_100_mb_chunked_upload_is_refused_while_streaming(session: Session, content_type: str) -> None:
    api = session.api
    before = api.rss_kb()
    first = b'{"image_base64": "' if content_type == JSON else FILE_PART_HEAD
    answer = upload_until_answered(api, content_type, first)
    grown_kb = api.rss_kb() - before
    assert answer.status == 413, answer.head
    # Refused after about the limit, not after the 100 MB (socket buffers hold a few MB more).
    assert answer.bytes_sent < MAX_BODY_BYTES + 24 * 1024 * 1024, answer.bytes_sent
    assert answer.bytes_sent < BIG_UPLOAD_BYTES // 2
    assert grown_kb < 24 * 1024, f"RSS grew by {grown_kb} KiB"
    session.count("100 MB chunked upload")
    record(
        SUITE,
        **{
            f"chunked_100mb_{'json' if content_type == JSON else 'multipart'}": {
                "status": answer.status,
                "bytes_sent_before_answer": answer.bytes_sent,
                "seconds": round(answer.seconds, 3),
                "rss_growth_kb": grown_kb,
            }
        },
    )
    assert_still_healthy(api)


def test_a_declared_100_mb_body_is_refused_before_it_is_sent(session: Session) -> None:
    api = session.api
    sock = raw_connection(api)
    started = time.monotonic()
    try:
        sock.sendall(request_head(MULTIPART, BIG_UPLOAD_BYTES) + b"x" * 65536)
        answer = read_answer(sock, started, 65536, timeout=30)
    finally:
        sock.close()
    assert answer.status == 413, answer.head
    assert answer.seconds < 5.0
    session.count("declared 100 MB body")
    assert_still_healthy(api)


@pytest.mark.parametrize("content_type", [MULTIPART, JSON], ids=["multipart", "json"])
def test_a_stalled_upload_gets_408_within_the_timeout_and_holds_no_slot(
    session: Session, content_type: str
) -> None:
    """STALLED_UPLOADS clients send a few bytes of a 5000-byte body, then nothing. Meanwhile a
    good prediction goes through (the API has 1 slot and 2 queue places: stalled bodies hold
    none), and each stalled client gets 408 (or a closed connection) within the timeout + margin."""
    api = session.api
    sockets = []
    started = time.monotonic()
    for _ in range(STALLED_UPLOADS):
        sock = raw_connection(api)
        sock.sendall(request_head(content_type, 5000) + b"--cxr-boundary\r\n")
        sockets.append(sock)
    try:
        time.sleep(0.5)
        assert api.metric("cxr_inferences_in_flight") == 0
        assert api.metric("cxr_inference_queue_depth") == 0
        good_started = time.monotonic()
        api.assert_healthy()
        good_seconds = time.monotonic() - good_started
        answers: list[RawAnswer] = []
        threads = [
            threading.Thread(
                target=lambda s=sock: answers.append(
                    read_answer(s, started, 20, REQUEST_TIMEOUT_SECONDS + 30)
                )
            )
            for sock in sockets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for sock in sockets:
            sock.close()
    assert good_seconds < REQUEST_TIMEOUT_SECONDS, good_seconds
    for answer in answers:
        assert answer.status in (408, None), answer.head
        assert answer.seconds < REQUEST_TIMEOUT_SECONDS + 5.0, answer.seconds
    slowest = max(answer.seconds for answer in answers)
    session.count("stalled upload", STALLED_UPLOADS)
    record(
        SUITE,
        **{
            f"stalled_upload_{'json' if content_type == JSON else 'multipart'}": {
                "clients": STALLED_UPLOADS,
                "statuses": sorted({str(answer.status) for answer in answers}),
                "slowest_answer_seconds": round(slowest, 2),
                "request_timeout_seconds": REQUEST_TIMEOUT_SECONDS,
                "good_predict_meanwhile_seconds": round(good_seconds, 2),
            }
        },
    )
    assert_still_healthy(api)


def test_a_client_hanging_up_mid_body_is_not_a_server_error(session: Session) -> None:
    api = session.api
    for content_type in (MULTIPART, JSON):
        sock = raw_connection(api)
        sock.sendall(request_head(content_type, 100_000) + FILE_PART_HEAD + b"x" * 1000)
        time.sleep(0.3)
        sock.close()
    time.sleep(0.5)
    assert api.server_errors() == session.warm_up_server_errors, api.status_counts()
    session.count("client hung up mid-body", 2)
    assert_still_healthy(api)


# --- fuzzing the HTTP surface -------------------------------------------------------------------

CONTENT_TYPES = st.sampled_from(
    [MULTIPART, JSON, "multipart/form-data", "application/octet-stream", "image/png", "text/plain; charset=x"]
)
QUERY_VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
QUERIES = st.dictionaries(
    st.sampled_from(["heatmaps", "heatmap_style", "heatmap_size", "x"]), QUERY_VALUES, max_size=3
)
ACCEPTED = {200, 400, 413, 415, 422}


def check_answer(response: httpx.Response) -> None:
    assert response.status_code in ACCEPTED, f"{response.status_code}: {response.text[:300]}"
    if response.status_code != 200:
        assert_problem(response, response.status_code)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.binary(max_size=3000), content_type=CONTENT_TYPES, query=QUERIES)
def test_fuzz_bodies_and_parameters(
    session: Session, body: bytes, content_type: str, query: dict[str, str]
) -> None:
    response = session.api.client.post(
        "/v1/predict", params=query, content=body, headers={"Content-Type": content_type}
    )
    check_answer(response)
    session.count("fuzzed bodies and parameters")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 5000), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6
    ),
    filename=st.text(max_size=20),
    heatmaps=st.sampled_from(["none", "top:2", "all"]),
)
def test_fuzz_mutated_uploads(
    session: Session, edits: list[tuple[int, bytes]], filename: str, heatmaps: str
) -> None:
    """A small real PNG, JPEG or DICOM with bytes overwritten, as a proper multipart upload."""
    sources = [png_bytes(_NOISE), encoded(_NOISE, "JPEG"), make_dicom(_NOISE, 8)]
    data = bytearray(sources[edits[0][0] % len(sources)])
    for offset, patch in edits:
        at = offset % len(data)
        data[at : at + len(patch)] = patch
    response = session.api.client.post(
        f"/v1/predict?heatmaps={heatmaps}", files={"file": (filename or "x", bytes(data))}
    )
    check_answer(response)
    session.count("fuzzed uploads")


def test_schemathesis_finds_no_server_error(session: Session, tmp_path: Path) -> None:
    """schemathesis 4 (`st run`) against the running API's /openapi.json: every operation, examples,
    coverage and fuzzing phases, bounded examples; no 5xx."""
    api = session.api
    errors_before = api.server_errors()
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        f"{api.base_url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(SCHEMATHESIS_EXAMPLES),
        "--seed",
        "20261123",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--no-color",
        "--report",
        "json",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    reports = list(tmp_path.glob("*.json"))
    assert reports, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(reports[0].read_text())
    cases = report["test_cases"]
    session.count("schemathesis cases", int(cases["generated"]))
    record(
        SUITE,
        schemathesis={
            "generated": cases["generated"],
            "with_failures": cases["with_failures"],
            "operations_tested": report["operations"]["tested"],
            "seconds": round(report["running_time"], 1),
        },
    )
    assert cases["with_failures"] == 0 and not report["failures"], result.stdout[-5000:]
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert api.server_errors() == errors_before == session.warm_up_server_errors, api.status_counts()
    assert_still_healthy(api)


# --- after everything -------------------------------------------------------------------------


def test_after_all_bad_inputs_the_process_is_healthy_and_its_memory_bounded(session: Session) -> None:
    api = session.api
    api.assert_healthy()
    grown_kb = api.rss_kb() - session.baseline_rss_kb
    counts = api.status_counts()
    server_errors = api.server_errors() - session.warm_up_server_errors
    unhandled = api.log_text().count("unhandled ")
    tried = sum(session.tried.values())
    record(
        SUITE,
        statuses={str(status): n for status, n in sorted(counts.items())},
        server_errors=server_errors,
        warm_up_server_errors=session.warm_up_server_errors,
        unhandled_errors_logged=unhandled,
        rss_baseline_kb=session.baseline_rss_kb,
        rss_growth_kb=grown_kb,
        rss_growth_bound_kb=RSS_GROWTH_BOUND_KB,
    )
    summarise(
        SUITE,
        f"{len(BAD_INPUTS)} kinds of bad input x {REPEATS} + streaming/stalled/hang-up cases + fuzzing + "
        f"schemathesis = {tried} bad requests; 5xx: {server_errors}; "
        f"RSS {session.baseline_rss_kb / 1024:.0f} MiB -> "
        f"{(session.baseline_rss_kb + grown_kb) / 1024:.0f} MiB "
        f"({grown_kb / 1024:+.1f} MiB, bound {RSS_GROWTH_BOUND_KB // 1024} MiB); healthy after all",
    )
    assert server_errors == 0, counts
    assert unhandled == 0
    assert grown_kb <= RSS_GROWTH_BOUND_KB, f"RSS grew by {grown_kb} KiB: {session.rss_trace_kb}"
    # No leak per request: the repeated table (every bad input REPEATS times) grows nothing.
    table = [kb for name, kb in session.rss_trace_kb if name.startswith("test_bad_input_gets_its_problem")]
    table_growth_kb = table[-1] - session.baseline_rss_kb
    record(SUITE, rss_growth_over_the_table_kb=table_growth_kb)
    assert table_growth_kb <= TABLE_GROWTH_BOUND_KB, session.rss_trace_kb
