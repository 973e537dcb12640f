"""POST /v1/predict on the real model and real radiographs: both body forms, every response
field, heatmap options, and the problem+json answer to each kind of bad request."""

import dataclasses
import io
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from api_helpers import (
    MakeSettings,
    Serve,
    assert_problem,
    b64,
    decode_png,
    hold_slot,
    max_difference,
    post_json,
    predict_probabilities,
    release,
    served,
    upload,
)
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from cxr.imaging import decode_image
from cxr.labels import LABELS
from service.api.app import create_app
from service.api.model_runtime import ModelRuntime

MB = 1_000_000


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def answer(client: TestClient, radiograph_png: bytes) -> dict[str, object]:
    response = upload(client, radiograph_png)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, object] = response.json()
    body["_header_request_id"] = response.headers["x-request-id"]
    return body


def test_every_field_of_the_answer(answer: dict[str, object], runtime: ModelRuntime) -> None:
    assert set(answer) - {"_header_request_id"} == {
        "probabilities",
        "findings",
        "heatmaps",
        "heatmap_engine",
        "model",
        "request_id",
        "warnings",
    }
    probabilities = answer["probabilities"]
    assert isinstance(probabilities, dict) and list(probabilities) == list(LABELS)
    assert all(0.0 <= value <= 1.0 for value in probabilities.values())
    card = runtime.card
    assert answer["model"] == {
        "name": card.name,
        "version": card.version,
        "sha256": card.sha256,
        "precision": runtime.precision,
    }
    assert answer["request_id"] == answer["_header_request_id"]
    assert answer["heatmaps"] == {} and answer["heatmap_engine"] is None and answer["warnings"] == []


def test_probabilities_are_the_models_on_the_shared_preprocessing(
    answer: dict[str, object], runtime: ModelRuntime, radiograph_png: bytes
) -> None:
    expected = runtime.predict(runtime.preprocess(decode_image(radiograph_png).pixels)).probabilities
    probabilities = answer["probabilities"]
    assert isinstance(probabilities, dict)
    np.testing.assert_allclose(list(probabilities.values()), expected, atol=1e-6)


def test_findings_are_the_labels_at_or_over_their_threshold(
    answer: dict[str, object], runtime: ModelRuntime
) -> None:
    probabilities = answer["probabilities"]
    findings = answer["findings"]
    assert isinstance(probabilities, dict) and isinstance(findings, list)
    thresholds = runtime.card.thresholds
    expected = {label for label, p in probabilities.items() if p >= thresholds[label]}
    assert {finding["label"] for finding in findings} == expected
    for finding in findings:
        assert finding["threshold"] == thresholds[finding["label"]]
        assert finding["probability"] == probabilities[finding["label"]]
    assert [f["probability"] for f in findings] == sorted((f["probability"] for f in findings), reverse=True)


def test_a_probability_equal_to_its_threshold_is_a_finding(
    serve: Serve,
    make_settings: MakeSettings,
    runtime: ModelRuntime,
    radiograph_png: bytes,
    answer: dict[str, object],
) -> None:
    probabilities = answer["probabilities"]
    assert isinstance(probabilities, dict)
    label, other = "Effusion", "Mass"
    thresholds = dict.fromkeys(LABELS, 1.0)
    thresholds[label] = probabilities[label]  # at the threshold: a finding
    thresholds[other] = float(np.nextafter(probabilities[other], 2.0))  # just over it: not
    card = runtime.card.model_copy(update={"thresholds": thresholds})
    custom = dataclasses.replace(runtime, card=card)
    with served(create_app(make_settings(), loader=lambda _: custom)) as client:
        body = upload(client, radiograph_png).json()
    assert [finding["label"] for finding in body["findings"]] == [label]


def test_json_body_gives_the_multipart_answer(
    client: TestClient, radiograph_png: bytes, answer: dict[str, object]
) -> None:
    response = post_json(client, {"image_base64": b64(radiograph_png)})
    assert response.status_code == 200, response.text
    assert response.json()["probabilities"] == answer["probabilities"]
    data_url = post_json(client, {"image_base64": "data:image/png;base64," + b64(radiograph_png)})
    assert data_url.json()["probabilities"] == answer["probabilities"]


def test_json_options_in_the_body_or_the_query(client: TestClient, radiograph_png: bytes) -> None:
    in_body = post_json(client, {"image_base64": b64(radiograph_png), "heatmaps": "Mass", "heatmap_size": 64})
    in_query = post_json(client, {"image_base64": b64(radiograph_png)}, "?heatmaps=Mass&heatmap_size=64")
    for response in (in_body, in_query):
        assert response.status_code == 200, response.text
        assert decode_png(response.json()["heatmaps"]["Mass"]).size == (64, 64)
    conflict = post_json(client, {"image_base64": b64(radiograph_png), "heatmaps": "Mass"}, "?heatmaps=all")
    assert "both in the query" in assert_problem(conflict, 422)["detail"]


@pytest.mark.parametrize(
    ("spec", "count"),
    [("none", 0), ("top:1", 1), ("top:3", 3), ("all", 14), ("Effusion,Mass", 2), ("Mass,Mass", 1)],
)
def test_heatmap_selection(
    client: TestClient, radiograph_png: bytes, runtime: ModelRuntime, spec: str, count: int
) -> None:
    body = upload(client, radiograph_png, f"?heatmaps={spec}").json()
    heatmaps, probabilities = body["heatmaps"], body["probabilities"]
    assert len(heatmaps) == count
    if spec.startswith("top:"):
        ranked = sorted(LABELS, key=lambda label: (-probabilities[label], LABELS.index(label)))
        assert list(heatmaps) == ranked[:count]
    if spec == "all":
        assert list(heatmaps) == list(LABELS)
    for text in heatmaps.values():
        image = decode_png(text)
        assert image.format == "PNG" and image.size == (runtime.input_size, runtime.input_size)
    if count:
        # The sidecar is down in this app: the fast path made them, and says so.
        assert body["heatmap_engine"] == "cam"
        assert any("Grad-CAM sidecar is unavailable" in warning for warning in body["warnings"])
    else:
        assert body["heatmap_engine"] is None and body["warnings"] == []


@pytest.mark.parametrize(("style", "transparent"), [("overlay", False), ("mask", True)])
def test_heatmap_styles(client: TestClient, radiograph_png: bytes, style: str, transparent: bool) -> None:
    body = upload(client, radiograph_png, f"?heatmaps=Effusion&heatmap_style={style}").json()
    image = decode_png(body["heatmaps"]["Effusion"])
    assert image.mode == "P" and ("transparency" in image.info) == transparent


def test_overlay_shows_the_radiograph(client: TestClient, radiograph_png: bytes) -> None:
    body = upload(client, radiograph_png, "?heatmaps=Effusion&heatmap_size=256").json()
    overlay = np.asarray(decode_png(body["heatmaps"]["Effusion"]).convert("L"), dtype=np.float32) / 255
    radiograph = np.asarray(Image.open(io.BytesIO(radiograph_png)).resize((256, 256)), dtype=np.float32) / 255
    assert np.corrcoef(overlay.ravel(), radiograph.ravel())[0, 1] > 0.5


@pytest.mark.parametrize("size", [16, 100, 512, 1024])
def test_heatmap_sizes(client: TestClient, radiograph_png: bytes, size: int) -> None:
    body = upload(client, radiograph_png, f"?heatmaps=Mass&heatmap_size={size}").json()
    assert decode_png(body["heatmaps"]["Mass"]).size == (size, size)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("1025", "less than or equal to 1024"),
        ("15", "greater than or equal"),
        ("abc", "valid integer"),
        ("", "valid integer"),
    ],
)
def test_bad_heatmap_sizes(client: TestClient, radiograph_png: bytes, size: str, message: str) -> None:
    assert (
        message
        in assert_problem(upload(client, radiograph_png, f"?heatmaps=Mass&heatmap_size={size}"), 422)[
            "detail"
        ]
    )


def test_heatmap_size_is_limited_by_the_image(
    client: TestClient, radiograph_png: bytes, runtime: ModelRuntime
) -> None:
    small = _png(Image.open(io.BytesIO(radiograph_png)).resize((300, 300)))
    too_big = upload(client, small, "?heatmaps=Mass&heatmap_size=301")
    assert "for this 300x300 image" in assert_problem(too_big, 422)["detail"]
    fits = upload(client, small, "?heatmaps=Mass&heatmap_size=300")
    assert decode_png(fits.json()["heatmaps"]["Mass"]).size == (300, 300)
    default = upload(client, small, "?heatmaps=Mass").json()
    assert decode_png(default["heatmaps"]["Mass"]).size == (runtime.input_size,) * 2


@pytest.mark.parametrize("style", ["overlay", "mask"])
def test_a_14_label_answer_at_the_largest_size_stays_small(
    client: TestClient, radiograph_png: bytes, style: str, record_property: Callable[[str, object], None]
) -> None:
    response = upload(client, radiograph_png, f"?heatmaps=all&heatmap_size=1024&heatmap_style={style}")
    assert response.status_code == 200
    assert len(response.json()["heatmaps"]) == 14
    record_property(f"bytes_14_heatmaps_1024_{style}", len(response.content))
    assert len(response.content) < 4 * MB, f"{len(response.content) / MB:.2f} MB"


def test_fallback_none_gives_no_heatmaps_and_a_warning(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    with serve(make_settings(heatmap_fallback="none")) as client:
        body = upload(client, radiograph_png, "?heatmaps=top:2").json()
    assert body["heatmaps"] == {} and body["heatmap_engine"] is None
    assert any("HEATMAP_FALLBACK=none" in warning for warning in body["warnings"])


# --- Bad requests: each answered with the right problem, never a 500 ---------------------------

BOUNDARY = "cxrboundary"


def _multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart body of (field name, filename or None, content)."""
    chunks = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
        )
    return b"".join(chunks) + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (_multipart(("image", "x.png", b"\x89PNG")), MULTIPART, "unexpected form field(s) image"),
        (
            _multipart(("file", "x.png", b"\x89PNG"), ("heatmaps", None, b"all")),
            MULTIPART,
            "pass options as query parameters",
        ),
        (f"--{BOUNDARY}--\r\n".encode(), MULTIPART, "no 'file' part"),
        (_multipart(("file", "a.png", b"1"), ("file", "b.png", b"2")), MULTIPART, "2 'file' parts"),
        (
            _multipart(("file", "a.png", b"1"), ("file", "b.png", b"2"), ("file", "c.png", b"3")),
            MULTIPART,
            "Too many files",
        ),
        (_multipart(("file", None, b"\x89PNG")), MULTIPART, "text field, not a file part"),
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--x--\r\n",
            {"Content-Type": "multipart/form-data; boundary=x"},
            "cannot be parsed",
        ),
        (b"garbage", {"Content-Type": "multipart/form-data"}, "cannot be parsed"),
        (b"{not json", {"Content-Type": "application/json"}, "not valid JSON"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, "not valid JSON"),
        (b"[1, 2]", {"Content-Type": "application/json"}, "JSON body"),
        (b'{"heatmaps": "all"}', {"Content-Type": "application/json"}, "image_base64: Field required"),
        (
            b'{"image_base64": "AAAA", "file": "x"}',
            {"Content-Type": "application/json"},
            "file: Extra inputs",
        ),
        (b'{"image_base64": "!!!!"}', {"Content-Type": "application/json"}, "not valid base64"),
        (b'{"image_base64": ""}', {"Content-Type": "application/json"}, "image_base64"),
        (b'{"image_base64": 12}', {"Content-Type": "application/json"}, "image_base64"),
    ],
)
def test_malformed_requests_are_400(
    client: TestClient, body: bytes, headers: dict[str, str], message: str
) -> None:
    problem = assert_problem(client.post("/v1/predict", content=body, headers=headers), 400)
    assert message in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "image/png"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ],
)
def test_other_request_content_types_are_415(
    client: TestClient, radiograph_png: bytes, headers: dict[str, str]
) -> None:
    problem = assert_problem(client.post("/v1/predict", content=radiograph_png, headers=headers), 415)
    assert problem["type"] == "urn:cxr:problem:unsupported-content-type"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "unsupported-image"),
        (b"just some text, not an image", "unsupported-image"),
        (b"GIF89a" + b"\x00" * 100, "unsupported-image"),
        (b"%PDF-1.7\n" + b"\x00" * 100, "unsupported-image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "corrupt-image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "corrupt-image"),
    ],
)
def test_not_a_supported_image_is_415(client: TestClient, data: bytes, kind: str) -> None:
    assert assert_problem(upload(client, data), 415)["type"] == f"urn:cxr:problem:{kind}"


def test_truncated_real_png_is_415(client: TestClient, radiograph_png: bytes) -> None:
    assert_problem(upload(client, radiograph_png[: len(radiograph_png) // 2]), 415)
    json_form = post_json(client, {"image_base64": b64(radiograph_png[:5000])})
    assert_problem(json_form, 415)


def test_image_over_the_pixel_limit_is_413(
    serve: Serve, make_settings: MakeSettings, radiograph_png: bytes
) -> None:
    with serve(make_settings(max_pixels=1000 * 1000)) as client:
        problem = assert_problem(upload(client, radiograph_png), 413)
    assert problem["type"] == "urn:cxr:problem:image-too-large" and "1048576 pixels" in problem["detail"]


@pytest.mark.parametrize(("width", "height"), [(20, 20), (400, 40), (31, 500)])
def test_images_not_shaped_like_a_radiograph_are_422(client: TestClient, width: int, height: int) -> None:
    problem = assert_problem(upload(client, _png(Image.new("L", (width, height), 128))), 422)
    assert problem["type"] == "urn:cxr:problem:image-shape"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?heatmaps=Efusion", "unknown label 'Efusion'"),
        ("?heatmaps=top:0", "top:K"),
        ("?heatmaps=top:99", "top:K"),
        ("?heatmaps=Mass,,Nodule", "empty label name"),
        ("?heatmap_style=bold", "heatmap_style"),
    ],
)
def test_bad_parameters_are_422(client: TestClient, radiograph_png: bytes, query: str, message: str) -> None:
    assert message in assert_problem(upload(client, radiograph_png, query), 422)["detail"]


@pytest.mark.parametrize(
    "body", [{"heatmap_size": "big"}, {"heatmap_style": "bold"}, {"heatmaps": 3}, {"heatmaps": "top:0"}]
)
def test_bad_json_options_are_422(client: TestClient, radiograph_png: bytes, body: dict[str, object]) -> None:
    assert_problem(post_json(client, {"image_base64": b64(radiograph_png), **body}), 422)


@pytest.fixture(scope="module")
def colour_photo(radiograph_png: bytes) -> bytes:
    grey = np.asarray(Image.open(io.BytesIO(radiograph_png)).resize((256, 256)), dtype=np.float32)
    rgb = np.stack([grey, grey * 0.5, 255 - grey], axis=-1).astype(np.uint8)
    return _png(Image.fromarray(rgb))


def test_out_of_distribution_warns_by_default(client: TestClient, colour_photo: bytes) -> None:
    body = upload(client, colour_photo).json()
    assert len(body["probabilities"]) == 14
    assert any("may not be a frontal chest X-ray: colour image" in warning for warning in body["warnings"])


def test_out_of_distribution_refused_when_configured(
    serve: Serve, make_settings: MakeSettings, colour_photo: bytes
) -> None:
    with serve(make_settings(ood_mode="refuse")) as client:
        problem = assert_problem(upload(client, colour_photo), 422)
    assert problem["type"] == "urn:cxr:problem:out-of-distribution" and "colour image" in problem["detail"]


def test_alone_or_under_load_the_guard_and_the_probabilities_agree(
    serve: Serve, make_settings: MakeSettings, colour_photo: bytes, radiograph_png: bytes
) -> None:
    """Alone, the guard runs beside the preprocessing and the inference; with another request in
    flight, first, so that a refused image costs no inference."""
    with serve(make_settings(ood_mode="refuse", max_concurrent_inferences=2)) as client:
        alone = predict_probabilities(client, radiograph_png)
        refused_alone = assert_problem(upload(client, colour_photo), 422)
        inferences_alone = inference_count(client)
        slot = hold_slot(client)
        try:
            under_load = predict_probabilities(client, radiograph_png)
            refused_under_load = assert_problem(upload(client, colour_photo), 422)
        finally:
            release(client, slot)
        inferences_under_load = inference_count(client) - inferences_alone
    assert max_difference(alone, under_load) <= 1e-5  # two onnxruntime sessions: 2 threads, then 1
    assert refused_alone["detail"] == refused_under_load["detail"]
    assert "colour image" in refused_alone["detail"]
    assert (inferences_alone, inferences_under_load) == (2, 1)


def inference_count(client: TestClient) -> float:
    families = text_string_to_metric_families(client.get("/metrics").text)
    samples = (sample for family in families for sample in family.samples)
    return next(sample.value for sample in samples if sample.name == "cxr_inference_seconds_count")


def _random_inputs() -> Iterator[bytes]:
    rng = np.random.default_rng(11)
    for prefix in (
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"\x00" * 128 + b"DICM",
        b"RIFF\x00\x00\x00\x00WEBP",
    ):
        for length in (0, 7, 300, 5000):
            yield prefix + rng.integers(0, 256, length, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("data", list(_random_inputs()))
def test_random_bytes_never_cause_a_500(client: TestClient, data: bytes) -> None:
    for response in (upload(client, data), post_json(client, {"image_base64": b64(data)})):
        assert 400 <= response.status_code < 500, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


def test_probabilities_do_not_depend_on_the_body_form(
    client: TestClient, radiograph_png: bytes, answer: dict[str, object]
) -> None:
    second = upload(client, radiograph_png).json()["probabilities"]
    probabilities = answer["probabilities"]
    assert isinstance(probabilities, dict)
    assert max_difference(probabilities, second) == 0.0
