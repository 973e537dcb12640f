"""Security of a real API process: API keys compared in constant time and never logged, no DICOM
header data (names, IDs, dates, institution) in responses or logs, request size and pixel
limits, CORS off unless configured, security headers, structured JSON logs with request ids, no
authentication => loopback only, and a lock file of exact versions with `make audit`.
"""

import base64
import hmac
import inspect
import io
import json
import re
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from dicom_factory import IDENTIFYING_STRINGS, dataset_bytes, make_dataset, make_dicom
from fastapi.testclient import TestClient
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from PIL import Image
from processes import LOOPBACK, free_port
from reliability_helpers import (
    RADIOGRAPH,
    REPO,
    Api,
    api_environment,
    assert_problem,
    png_bytes,
    radiograph_of_size,
    record,
    run_to_exit,
    running_api,
    summarise,
)

from service.api import auth
from service.api.app import create_app
from service.api.settings import Settings

pytestmark = pytest.mark.slow

SUITE = "security"
KEYS = ("Kx7-right-key-one-93fa1c", "Kx7-right-key-two-51be07")
WRONG_KEY = "Zq4-wrong-key-8d01e6aa"
MAX_BODY_BYTES = 1024 * 1024
MAX_PIXELS = 600_000  # 1024 x 1024 = 1 048 576 is over it, 512 x 512 under
# More header data than dicom_factory puts in, each distinctive enough to grep for.
EXTRA_HEADER = {
    "StudyDate": "19870305",
    "AccessionNumber": "ACC-QZ-55102",
    "ReferringPhysicianName": "Umbertide^Philomena",
    "InstitutionAddress": "17 Gorsewick Lane",
}
SECRETS_OF_THE_DICOM = (*IDENTIFYING_STRINGS, *EXTRA_HEADER.values(), "Umbertide", "Gorsewick")


def leaked(text: str) -> list[str]:
    return [value for value in SECRETS_OF_THE_DICOM if value.lower() in text.lower()]


def response_text(response: httpx.Response) -> str:
    return "\n".join([*(f"{k}: {v}" for k, v in response.headers.items()), response.text])


# --- constant-time comparison --------------------------------------------------------------------


def test_key_comparison_is_hmac_compare_digest_over_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource(auth.key_matches)
    assert "hmac.compare_digest" in source and "==" not in source and "break" not in source
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    keys = Settings.from_environ({"API_KEYS": ",".join((*KEYS, "Kx7-third-key-00000"))}).api_keys
    for presented, expected in [(KEYS[0], True), (KEYS[1], True), (WRONG_KEY, False), ("", False)]:
        calls.clear()
        assert auth.key_matches(presented, keys) is expected
        assert len(calls) == len(keys), "every configured key is compared, whichever matches"


def _failing_loader(_: Settings) -> Any:
    raise RuntimeError("no model in this test")


def test_the_app_checks_keys_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The /v1 dependency really goes through the constant-time comparison (no model needed: auth
    runs before the model dependency, which then answers 503)."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    settings = Settings.from_environ({"API_KEYS": ",".join(KEYS)})
    with TestClient(create_app(settings, loader=_failing_loader)) as client:
        assert client.get("/v1/model", headers={"X-API-Key": WRONG_KEY}).status_code == 401
        assert len(calls) == len(KEYS)
        assert client.get("/v1/model", headers={"Authorization": f"Bearer {KEYS[1]}"}).status_code == 503
        assert len(calls) == 2 * len(KEYS)


# --- one real API with keys, DEBUG logs and tight limits -----------------------------------------


@pytest.fixture(scope="module")
def api(model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(
        model_dir,
        onnx_dir,
        tmp_path_factory.mktemp("security-api"),
        API_KEYS=",".join(KEYS),
        LOG_LEVEL="DEBUG",
        MAX_BODY_BYTES=MAX_BODY_BYTES,
        MAX_PIXELS=MAX_PIXELS,
    ) as running:
        running.client.headers["X-API-Key"] = KEYS[0]
        yield running


def key_requests(api: Api) -> list[httpx.Response]:
    """Requests with right, wrong and missing keys, through every way of sending one."""
    image = radiograph_of_size(512)
    url = api.base_url
    sent = []
    for headers in (
        {"X-API-Key": KEYS[0]},
        {"Authorization": f"Bearer {KEYS[1]}"},
        {"X-API-Key": WRONG_KEY},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Basic {base64.b64encode(f'user:{WRONG_KEY}'.encode()).decode()}"},
        {"X-API-Key": KEYS[0] + "x"},
        {"X-API-Key": KEYS[0][:-1]},
        {},
    ):
        sent.append(httpx.post(f"{url}/v1/predict", files={"file": ("x.png", image)}, headers=headers))
        sent.append(
            httpx.post(f"{url}/v1/predict", files={"file": ("x.png", b"not an image")}, headers=headers)
        )
        sent.append(httpx.get(f"{url}/v1/model", headers=headers))
        sent.append(httpx.get(f"{url}/v1/nothing?key={WRONG_KEY}", headers=headers))
    return sent


def test_keys_authenticate_and_are_never_logged_or_echoed(api: Api) -> None:
    responses = key_requests(api)
    statuses = [response.status_code for response in responses]
    assert statuses[:4] == [200, 415, 200, 404] and statuses[4:8] == [200, 415, 200, 404]
    for response in responses[8:]:
        if response.request.url.path.startswith("/v1/nothing"):
            continue
        body = assert_problem(response, 401)
        assert "WWW-Authenticate" in response.headers, body
    for response in responses:
        text = response_text(response)
        for key in (*KEYS, WRONG_KEY):
            assert key not in text.replace(str(response.request.url), ""), (key, text)
    log = api.log_text()
    found = [key for key in (*KEYS, WRONG_KEY) if key in log or key[:12] in log]
    record(SUITE, key_requests=len(responses), keys_found_in_logs=found, log_lines=len(log.splitlines()))
    assert found == []
    assert "[redacted]" not in log, "a key reached a log call (the redaction filter caught it)"


# --- DICOM header data ---------------------------------------------------------------------------


def _grey(side: int) -> np.ndarray:
    with Image.open(RADIOGRAPH) as image:
        return np.asarray(image.convert("L").resize((side, side)), dtype=np.uint8)


def swallowing_transfer_syntax(data: bytes, length: int) -> bytes:
    """The file with its Transfer Syntax UID length run over the header that follows (found by
    fuzzing in tests/cxr: pydicom quoted the patient's name in a warning)."""
    at = data.index(b"\x02\x00\x10\x00UI") + 6
    return data[:at] + struct.pack("<H", length) + data[at + 2 :]


def dicom_cases() -> dict[str, tuple[bytes, int]]:
    grey = _grey(256)
    full = make_dicom(grey, 8, **EXTRA_HEADER)
    no_pixels = make_dataset(grey, 8, **EXTRA_HEADER)
    del no_pixels.PixelData
    return {
        "valid": (full, 200),
        "valid, 12-bit, windowed": (
            make_dicom((grey.astype(np.uint16) * 16), 12, window=(2048, 4096), **EXTRA_HEADER),
            200,
        ),
        "over MAX_PIXELS": (make_dicom(_grey(1024), 8, **EXTRA_HEADER), 413),
        "no pixel data": (dataset_bytes(no_pixels), 415),
        "truncated pixel data": (full[: len(full) - 5000], 415),
        "RGB": (make_dicom(np.stack([grey] * 3, axis=-1), 8, photometric="RGB", **EXTRA_HEADER), 415),
        "damaged length (548)": (swallowing_transfer_syntax(full, 548), 415),
        "damaged length (1200)": (swallowing_transfer_syntax(full, 1200), 415),
        "header cut after the patient module": (full[: full.index(b"Brackenwhistle") + 30], 415),
    }


def test_no_dicom_header_data_in_responses_or_logs(api: Api) -> None:
    cases = dicom_cases()
    assert leaked(cases["valid"][0].decode("latin-1")), "the test files must carry the header data"
    answers = []
    for name, (data, status) in cases.items():
        for query in ("", "?heatmaps=top:2", "?heatmaps=all&heatmap_style=mask"):
            response = api.client.post(f"/v1/predict{query}", files={"file": ("patient.dcm", data)})
            assert response.status_code == status, (name, response.text)
            assert leaked(response_text(response)) == [], (name, response.text)
            answers.append(response)
        body = {"image_base64": base64.b64encode(data).decode()}
        response = api.client.post("/v1/predict", json=body)
        assert response.status_code == status and leaked(response_text(response)) == [], (name, response.text)
        answers.append(response)
    in_log = leaked(api.log_text())
    record(SUITE, dicom_requests=len(answers), dicom_cases=len(cases), dicom_values_found_in_logs=in_log)
    assert in_log == []


def header_values(data: bytes) -> set[str]:
    """Every header value of a DICOM file (but the Study and SOP Instance UIDs, which answers may
    carry) long enough to search for."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    allowed = {str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)}
    elements = [*dataset.file_meta, *(element for element in dataset if element.keyword != "PixelData")]
    values = {str(element.value) for element in elements}
    return {value for value in values if len(value) >= 6 and value not in allowed}


def test_no_dicom_header_data_in_fhir_or_inference_protocol_answers(api: Api) -> None:
    cases = dicom_cases()
    model = api.client.get("/v1/model").json()["name"]
    assert leaked(" ".join(header_values(cases["valid"][0]))), "header_values must find the header data"
    answers = 0
    for name, (data, status) in cases.items():
        fhir = api.client.post(
            "/v1/predict?format=fhir&heatmaps=top:1", files={"file": ("patient.dcm", data)}
        )
        v2 = api.client.post(
            f"/v2/models/{model}/infer",
            json={
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1],
                        "datatype": "BYTES",
                        "data": [base64.b64encode(data).decode()],
                    }
                ]
            },
        )
        answers += 2
        assert fhir.status_code == status, (name, fhir.text)
        assert v2.status_code == (200 if status == 200 else 413 if status == 413 else 400), (name, v2.text)
        for response in (fhir, v2):
            assert leaked(response_text(response)) == [], (name, response.text)
        if status == 200:
            dataset = pydicom.dcmread(io.BytesIO(data))
            report = DiagnosticReport.model_validate_json(
                fhir.content
            )  # built and validated by fhir.resources
            assert report.imagingStudy[0].identifier.value == f"urn:oid:{dataset.StudyInstanceUID}"
            # The allowed UIDs are cut out first: another UID may be a prefix of them (pydicom's
            # implementation UID is the root of the UIDs it generates).
            answered = " ".join((fhir.text, v2.text))
            for uid in (str(dataset.StudyInstanceUID), str(dataset.SOPInstanceUID)):
                answered = answered.replace(uid, "")
            assert [value for value in header_values(data) if value in answered] == []
    in_log = leaked(api.log_text())
    record(SUITE, fhir_and_v2_dicom_requests=answers, fhir_and_v2_dicom_values_found_in_logs=in_log)
    assert in_log == []


# --- limits --------------------------------------------------------------------------------------


def test_request_size_and_pixel_limits(api: Api) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (800, 800), dtype=np.uint8)
    big_body = png_bytes(noise)  # incompressible: about 640 KB ...
    big_body = big_body + b"\0" * (MAX_BODY_BYTES + 1 - len(big_body))  # ... padded over the limit
    too_large = api.client.post("/v1/predict", files={"file": ("x.png", big_body)})
    assert assert_problem(too_large, 413)["type"] == "urn:cxr:problem:body-too-large"
    too_many = api.client.post("/v1/predict", files={"file": ("x.png", RADIOGRAPH.read_bytes())})
    body = assert_problem(too_many, 413)
    assert body["type"] == "urn:cxr:problem:image-too-large" and str(MAX_PIXELS) in body["detail"]
    json_too_large = api.client.post(
        "/v1/predict", json={"image_base64": base64.b64encode(big_body).decode()}
    )
    assert_problem(json_too_large, 413)
    allowed = api.client.post("/v1/predict", files={"file": ("x.png", radiograph_of_size(512))})
    assert allowed.status_code == 200


# --- CORS ----------------------------------------------------------------------------------------

ORIGIN = "https://viewer.hospital.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "x-api-key",
}


def test_cors_is_off_by_default(api: Api) -> None:
    preflight = httpx.options(f"{api.base_url}/v1/predict", headers=PREFLIGHT)
    simple = httpx.get(f"{api.base_url}/healthz", headers={"Origin": ORIGIN})
    predict = api.client.post(
        "/v1/predict", files={"file": ("x.png", radiograph_of_size(256))}, headers={"Origin": ORIGIN}
    )
    for response in (preflight, simple, predict):
        assert not any(name.lower().startswith("access-control-") for name in response.headers), (
            response.headers
        )
    assert predict.status_code == 200


def test_cors_is_on_for_the_configured_origins_only() -> None:
    settings = Settings.from_environ({"CORS_ORIGINS": f"{ORIGIN},https://other.hospital.example"})
    with TestClient(create_app(settings, loader=_failing_loader)) as client:
        allowed = client.options("/v1/predict", headers=PREFLIGHT)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        simple = client.get("/healthz", headers={"Origin": ORIGIN})
        assert simple.headers["access-control-allow-origin"] == ORIGIN
        assert "X-Request-ID" in simple.headers["access-control-expose-headers"]
        other = client.options("/v1/predict", headers={**PREFLIGHT, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        assert (
            "access-control-allow-origin"
            not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers
        )


# --- headers and logs ----------------------------------------------------------------------------


def test_security_headers_on_the_page_and_on_api_answers(api: Api) -> None:
    page = httpx.get(f"{api.base_url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    answers = {
        "page": page,
        "401": httpx.get(f"{api.base_url}/v1/model"),
        "200 predict": api.client.post("/v1/predict", files={"file": ("x.png", radiograph_of_size(256))}),
        "413 from the body limit": httpx.post(
            f"{api.base_url}/v1/predict", content=b"x" * (MAX_BODY_BYTES + 1), headers={"X-API-Key": KEYS[0]}
        ),
        "404": httpx.get(f"{api.base_url}/nothing"),
        "openapi": httpx.get(f"{api.base_url}/openapi.json"),
    }
    for name, response in answers.items():
        headers = response.headers
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("referrer-policy") == "no-referrer", name
        assert "server" not in headers, (name, headers.get("server"))
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp, (name, csp)
    page_csp = page.headers["content-security-policy"]
    assert (
        "default-src 'self'" in page_csp
        and "script-src 'self'" in page_csp
        and "unsafe-inline" not in page_csp
    )
    assert answers["401"].headers["content-security-policy"].startswith("default-src 'none'")


def test_logs_are_json_lines_with_request_ids(api: Api) -> None:
    request_ids = [f"sec-log-test-{n}" for n in range(3)]
    sent = [
        api.client.post(
            "/v1/predict",
            files={"file": ("x.png", radiograph_of_size(256))},
            headers={"X-Request-ID": request_ids[0]},
        ),
        api.client.post(
            "/v1/predict", files={"file": ("x.png", b"text")}, headers={"X-Request-ID": request_ids[1]}
        ),
        httpx.get(f"{api.base_url}/v1/model", headers={"X-Request-ID": request_ids[2]}),
    ]
    assert [r.status_code for r in sent] == [200, 415, 401]
    assert all(r.headers["x-request-id"] == rid for r, rid in zip(sent, request_ids, strict=True))
    assert sent[0].json()["request_id"] == request_ids[0] and sent[1].json()["request_id"] == request_ids[1]
    lines = [line for line in api.log_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, start-up included, is one JSON object
        assert {"time", "level", "logger", "message", "request_id"} <= set(entry), entry
        entries.append(entry)
    access = {e["request_id"]: e for e in entries if e["logger"] == "service.api.access"}
    for request_id, response in zip(request_ids, sent, strict=True):
        assert access[request_id]["status"] == response.status_code
        assert access[request_id]["path"] in ("/v1/predict", "/v1/model")
    assert all(e["request_id"] for e in entries if e["logger"] == "service.api.access")
    record(SUITE, json_log_lines=len(entries))


# --- binding, configuration, dependencies --------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses listening on `port` (IPv4, from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found


def test_without_keys_the_api_listens_on_loopback_only(
    model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_api(
        model_dir, onnx_dir, tmp_path_factory.mktemp("open-api"), API_HOST="0.0.0.0"
    ) as open_api:
        port = int(open_api.base_url.rsplit(":", 1)[1])
        addresses = listening_addresses(port)
        log = open_api.log_text()
    assert addresses == {LOOPBACK}, addresses
    assert "authentication is off" in log and "API_HOST=0.0.0.0 ignored" in log


def test_a_bad_key_in_the_configuration_is_not_quoted(
    model_dir: Path, onnx_dir: Path, tmp_path: Path
) -> None:
    short_key = "Qz7#kP1"  # 7 characters: refused
    env = api_environment(model_dir, onnx_dir, free_port(), API_KEYS=f"{KEYS[0]},{short_key}")
    code, output, _ = run_to_exit("service.api", env, tmp_path)
    assert code == 2, output
    assert "API_KEYS" in output and "key 2" in output
    assert short_key not in output and KEYS[0] not in output


def test_dependencies_are_locked_to_exact_versions_and_audit_is_a_make_target() -> None:
    lock = (REPO / "requirements.lock").read_text().splitlines()
    requirements = [
        line.split(";")[0].strip() for line in lock if line.strip() and not line.lstrip().startswith("#")
    ]
    assert requirements, "requirements.lock is empty"
    unpinned = [
        line for line in requirements if not re.fullmatch(r"[A-Za-z0-9_.\[\],-]+==[A-Za-z0-9_.+!-]+", line)
    ]
    assert unpinned == []
    names = {line.split("==")[0].lower() for line in requirements}
    assert {
        "fastapi",
        "onnxruntime",
        "pydicom",
        "uvicorn",
        "pip-audit",
        "schemathesis",
        "hypothesis",
    } <= names
    makefile = (REPO / "Makefile").read_text()
    audit = re.search(r"^audit:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert audit and "pip-audit" in audit[1] and "requirements.lock" in audit[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert "audit" not in ci, "CI cannot reach a vulnerability database: it must not run make audit"
    record(SUITE, locked_requirements=len(requirements))
    summarise(
        SUITE,
        f"keys compared with hmac.compare_digest over every key, never logged; DICOM header values in "
        f"responses/logs: none; CORS off by default; {len(requirements)} dependencies pinned in "
        "requirements.lock (make audit)",
    )
