"""The Open Inference Protocol (/v2) driven by the official client, tritonclient[http], against a real
API process (`python -m service.api`): image bytes and preprocessed tensors, binary and JSON, a
batch of 4, answers equal to /v1/predict's, the protocol's errors, and the same keys, limits and
metrics as /v1. One process for the module."""

import base64
import io
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from api_helpers import MakeSettings, Serve
from fastapi.testclient import TestClient
from PIL import Image
from processes import LOOPBACK, free_port, running_module, wait_until_ready
from tritonclient.utils import InferenceServerException

from cxr.labels import LABELS
from cxr.model_card import ModelCard, load_model_card
from cxr.preprocessing import preprocess_bytes
from service.api.app import create_app
from service.api.inference_protocol import decode_request, read_images, read_tensors
from service.api.model_runtime import ModelRuntime
from service.api.problems import Problem
from service.api.settings import Settings
from service.api.v2_datamodels import RequestInput

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
KEY = "v2-test-key-4c1e9b"
MAX_BODY_BYTES = 8 * 1024 * 1024
START_SECONDS = 180.0


@pytest.fixture(scope="module")
def card(model_dir: Path) -> ModelCard:
    return load_model_card(model_dir)


@pytest.fixture(scope="module")
def base_url(model_dir: Path, onnx_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        "MODEL_DIR": str(model_dir),
        "ONNX_DIR": str(onnx_dir),
        "API_HOST": LOOPBACK,
        "API_PORT": str(port),
        "GRADCAM_URL": f"http://{LOOPBACK}:{free_port()}",
        "API_KEYS": KEY,
        "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "ORT_INTRA_OP_THREADS": "2",
    }
    url = f"http://{LOOPBACK}:{port}"
    with running_module("service.api", env, tmp_path_factory.mktemp("v2-api-logs"), url) as api:
        wait_until_ready(f"{url}/readyz", api, timeout=START_SECONDS)
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(url=base_url.removeprefix("http://"), network_timeout=120.0) as server:
        yield server


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """The 4 committed NIH radiographs."""
    paths = sorted(FIXTURES.glob("*.png"))
    assert len(paths) == 4
    return [path.read_bytes() for path in paths]


@pytest.fixture(scope="module")
def reference(base_url: str, images: list[bytes]) -> np.ndarray:
    """/v1/predict's probabilities of each image, (4, 14) in LABELS order."""
    rows = []
    for image in images:
        response = httpx.post(
            f"{base_url}/v1/predict", files={"file": ("x.png", image)}, headers=auth(), timeout=120
        )
        assert response.status_code == 200, response.text
        rows.append([response.json()["probabilities"][label] for label in LABELS])
    return np.asarray(rows)


def auth() -> dict[str, str]:
    """A fresh headers dict per call: tritonclient adds Inference-Header-Content-Length to the dict
    it is given, and a stale one would cut the next request's JSON."""
    return {"X-API-Key": KEY}


def same_as_v1(probabilities: np.ndarray | None, reference: np.ndarray) -> None:
    assert probabilities is not None and probabilities.dtype == np.float32
    # /v1 writes the graph's float32 values as JSON numbers: equal, not merely close.
    np.testing.assert_array_equal(probabilities, reference.astype(np.float32))


def image_input(images: list[bytes], binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    if binary:
        tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    else:  # JSON strings: each image base64
        tensor.set_data_from_numpy(np.array([base64.b64encode(i) for i in images], dtype=np.object_), False)
    return tensor


def tensor_input(images: list[bytes], card: ModelCard, binary: bool = True) -> triton.InferInput:
    norm = card.normalisation
    batch = np.stack([preprocess_bytes(image, card.input_size, norm.mean, norm.std) for image in images])
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.astype(np.float32), binary_data=binary)
    return tensor


def test_health_and_metadata(client: triton.InferenceServerClient, card: ModelCard) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(card.name, headers=auth())
    assert client.is_model_ready(card.name, card.version, headers=auth())
    assert "binary_tensor_data" in client.get_server_metadata(headers=auth())["extensions"]
    metadata = client.get_model_metadata(card.name, headers=auth())
    assert metadata["name"] == card.name and metadata["versions"] == [card.version]
    assert {(t["name"], t["datatype"]) for t in metadata["inputs"]} == {("image", "BYTES"), ("input", "FP32")}
    outputs = {t["name"]: t["shape"] for t in metadata["outputs"]}
    assert outputs["probabilities"] == [-1, len(LABELS)] and outputs["feature_map"][0] == -1


def test_a_batch_of_4_images_as_binary_bytes(
    client: triton.InferenceServerClient, card: ModelCard, images: list[bytes], reference: np.ndarray
) -> None:
    result = client.infer(card.name, [image_input(images)], headers=auth())  # binary in and out
    same_as_v1(result.as_numpy("probabilities"), reference)
    assert result.as_numpy("feature_map") is None  # only when asked for


def test_images_as_json_base64_strings(
    client: triton.InferenceServerClient, card: ModelCard, images: list[bytes], reference: np.ndarray
) -> None:
    outputs = [triton.InferRequestedOutput("probabilities", binary_data=False)]
    result = client.infer(
        card.name,
        [image_input(images[:2], binary=False)],
        outputs=outputs,
        headers=auth(),
        model_version=card.version,
    )
    assert result.get_response()["outputs"][0]["data"]  # answered in JSON
    same_as_v1(result.as_numpy("probabilities"), reference[:2])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_preprocessed_tensors(
    client: triton.InferenceServerClient,
    card: ModelCard,
    images: list[bytes],
    reference: np.ndarray,
    binary: bool,
) -> None:
    count = 4 if binary else 1  # a JSON tensor is ~1 MB of text per image
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=binary),
        triton.InferRequestedOutput("feature_map", binary_data=True),
    ]
    result = client.infer(
        card.name, [tensor_input(images[:count], card, binary)], outputs=outputs, headers=auth()
    )
    same_as_v1(result.as_numpy("probabilities"), reference[:count])
    feature_map = result.as_numpy("feature_map")
    assert feature_map is not None and feature_map.shape[0] == count and np.all(np.isfinite(feature_map))


def error_of(call: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_errors_are_the_protocols(
    client: triton.InferenceServerClient,
    base_url: str,
    card: ModelCard,
    images: list[bytes],
    reference: np.ndarray,
) -> None:
    cases = {
        "non-image bytes": (
            lambda: client.infer(card.name, [image_input([b"not an image"])], headers=auth()),
            "400",
        ),
        "wrong shape": (
            lambda: client.infer(
                card.name, [_fp32("input", np.zeros((1, 64, 64, 3), np.float32))], headers=auth()
            ),
            "400",
        ),
        "unknown model": (lambda: client.infer("resnet50", [image_input(images[:1])], headers=auth()), "404"),
        "unknown version": (
            lambda: client.infer(card.name, [image_input(images[:1])], model_version="99", headers=auth()),
            "404",
        ),
        "unknown output": (
            lambda: client.infer(
                card.name,
                [image_input(images[:1])],
                outputs=[triton.InferRequestedOutput("logits")],
                headers=auth(),
            ),
            "400",
        ),
        "unknown input": (
            lambda: client.infer(card.name, [_fp32("pixels", np.zeros((1, 4), np.float32))], headers=auth()),
            "400",
        ),
        "no key": (lambda: client.infer(card.name, [image_input(images[:1])]), "401"),
        "unknown model metadata": (lambda: client.get_model_metadata("resnet50", headers=auth()), "404"),
    }
    for name, (call, status) in cases.items():
        error = error_of(call)
        assert error.status() == status, (name, error)
        assert error.message(), name  # the {"error": ...} text
    assert "logits" in error_of(cases["unknown output"][0]).message()
    raw = httpx.post(f"{base_url}/v2/models/{card.name}/infer", content=b"{", headers=auth())
    assert raw.status_code == 400 and set(raw.json()) == {"error"}
    too_large = httpx.post(
        f"{base_url}/v2/models/{card.name}/infer", content=b"\0" * (MAX_BODY_BYTES + 1), headers=auth()
    )
    assert too_large.status_code == 413 and set(too_large.json()) == {"error"}
    # Still serving, with the same answers.
    assert client.is_server_ready()
    same_as_v1(
        client.infer(card.name, [image_input(images[:1])], headers=auth()).as_numpy("probabilities"),
        reference[:1],
    )


def _fp32(name: str, array: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), "FP32")
    tensor.set_data_from_numpy(array)
    return tensor


def test_v2_shares_the_metrics(
    client: triton.InferenceServerClient, base_url: str, card: ModelCard, images: list[bytes]
) -> None:
    client.infer(card.name, [image_input(images[:1])], headers=auth())
    error_of(lambda: client.infer(card.name, [image_input([b"not an image"])], headers=auth()))
    page = httpx.get(f"{base_url}/metrics").text
    for status in ("200", "400"):
        assert f'endpoint="/v2/models/{{model_name}}/infer",method="POST",status="{status}"' in page
    assert metric_count(page, "cxr_inference_seconds_count") >= 1


def metric_count(page: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in page.splitlines() if line.startswith(name))


# --- in-process: readiness while loading, OOD_MODE=refuse -----------------------------------------


def test_v2_readiness_follows_the_model_load(make_settings: MakeSettings, runtime: ModelRuntime) -> None:
    gate = threading.Event()

    def load(_: Settings) -> ModelRuntime:
        assert gate.wait(60)
        return runtime

    app = create_app(make_settings(), loader=load)
    try:
        with TestClient(app) as test_client:
            assert test_client.get("/v2/health/live").json() == {"live": True}
            not_ready = test_client.get("/v2/health/ready")
            assert not_ready.status_code == 503 and not_ready.json() == {"ready": False}
            infer = test_client.post(f"/v2/models/{runtime.card.name}/infer", json={"inputs": []})
            assert (
                infer.status_code == 503 and set(infer.json()) == {"error"} and "retry-after" in infer.headers
            )
            assert test_client.get(f"/v2/models/{runtime.card.name}/ready").status_code == 503
            gate.set()
            assert app.state.service.load_finished.wait(30)
            assert test_client.get("/v2/health/ready").json() == {"ready": True}
            assert test_client.get(f"/v2/models/{runtime.card.name}/ready").json()["ready"] is True
    finally:
        gate.set()


def test_not_a_chest_x_ray_is_a_400_when_refused(
    serve: Serve, make_settings: MakeSettings, runtime: ModelRuntime
) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    image = {
        "name": "image",
        "shape": [1],
        "datatype": "BYTES",
        "data": [base64.b64encode(buffer.getvalue()).decode()],
    }
    with serve(make_settings(ood_mode="refuse")) as test_client:
        response = test_client.post(f"/v2/models/{runtime.card.name}/infer", json={"inputs": [image]})
    assert response.status_code == 400 and "chest X-ray" in response.json()["error"]


def test_v2_shares_admission_control(
    serve: Serve, make_settings: MakeSettings, runtime: ModelRuntime
) -> None:
    with serve(make_settings(max_concurrent_inferences=1, max_queued_requests=0)) as test_client:
        held = test_client.app.state.service.admission.slot()  # type: ignore[attr-defined]
        test_client.portal.call(held.__aenter__)  # type: ignore[union-attr]  # the one slot, taken
        try:
            response = test_client.post(f"/v2/models/{runtime.card.name}/infer", json={"inputs": []})
        finally:
            test_client.portal.call(held.__aexit__, None, None, None)  # type: ignore[union-attr]
        assert response.status_code == 503 and "retry-after" in response.headers
        assert "predictions running" in response.json()["error"]
        assert 'cxr_requests_rejected_total{reason="overloaded"} 1.0' in test_client.get("/metrics").text


# --- the data plane's decoding, without a model ---------------------------------------------------


def request_of(*inputs: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"inputs": list(inputs), **fields}).encode()


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"{", None, "not valid JSON"),
        (request_of(), None, "inputs"),
        (request_of({"name": "image", "shape": [1], "datatype": "STRING", "data": ["x"]}), None, "datatype"),
        (request_of({"name": "image", "shape": [1], "datatype": "BYTES"}, extra=1), None, "extra"),
        (b'{"inputs": []}', "99", "Inference-Header-Content-Length"),
        (b'{"inputs": []}', "-3", "Inference-Header-Content-Length"),
    ],
)
def test_malformed_requests_are_refused(body: bytes, header_length: str | None, message: str) -> None:
    with pytest.raises(Problem) as caught:
        decode_request(body, header_length)
    assert caught.value.status == 400 and message in caught.value.detail


def test_binary_data_is_split_by_input_in_order() -> None:
    header = request_of(
        {"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 14}}
    )
    data = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 3) + b"def"
    decoded = decode_request(header + data, str(len(header)))
    assert read_images(decoded.request.inputs[0], decoded.binary["image"]) == [b"abc", b"def"]
    with pytest.raises(Problem, match="does not fit"):
        decode_request(header + data[:-1], str(len(header)))
    with pytest.raises(Problem, match="bytes after"):
        decode_request(header + data + b"x", str(len(header)))


@pytest.mark.parametrize(
    ("tensor", "raw", "message"),
    [
        ({"shape": [2], "data": ["aGk="]}, None, "1 elements"),
        ({"shape": [1], "data": [3]}, None, "base64 string"),
        ({"shape": [1], "data": ["***"]}, None, "not valid base64"),
        ({"shape": [17], "data": ["aGk="] * 17}, None, "batch of 17"),
        ({"shape": [1, 2]}, b"", "shape"),
        ({"shape": [1]}, struct.pack("<I", 9) + b"abc", "runs past"),
        ({"shape": [1]}, b"\0\0", "truncated"),
    ],
)
def test_bad_image_tensors_are_refused(tensor: dict[str, Any], raw: bytes | None, message: str) -> None:
    with pytest.raises(Problem) as caught:
        read_images(RequestInput(name="image", datatype="BYTES", **tensor), raw)
    assert caught.value.status == 400 and message in caught.value.detail


@pytest.mark.parametrize(
    ("shape", "datatype", "data", "raw", "message"),
    [
        ([1, 4, 4, 3], "FP64", [0.0] * 48, None, "must be FP32"),
        ([1, 8, 8, 3], "FP32", [0.0] * 192, None, "expected [N, 4, 4, 3]"),
        ([1, 4, 4, 3], "FP32", [0.0] * 47, None, "47 elements"),
        ([1, 4, 4, 3], "FP32", ["x"] * 48, None, "must be numbers"),
        ([1, 4, 4, 3], "FP32", [float("nan")] * 48, None, "NaN"),
        ([1, 4, 4, 3], "FP32", None, b"\0" * 100, "100 bytes"),
    ],
)
def test_bad_fp32_tensors_are_refused(
    shape: list[int], datatype: str, data: list[Any] | None, raw: bytes | None, message: str
) -> None:
    with pytest.raises(Problem) as caught:
        read_tensors(RequestInput(name="input", shape=shape, datatype=datatype, data=data), raw, 4)
    assert caught.value.status == 400 and message in caught.value.detail


def test_fp32_tensors_read_json_nested_and_binary_alike() -> None:
    values = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3) / 7
    nested = RequestInput(name="input", shape=[2, 4, 4, 3], datatype="FP32", data=values.tolist())
    binary = RequestInput(name="input", shape=[2, 4, 4, 3], datatype="FP32")
    np.testing.assert_array_equal(read_tensors(nested, None, 4), values)
    np.testing.assert_array_equal(read_tensors(binary, values.astype("<f4").tobytes(), 4), values)
