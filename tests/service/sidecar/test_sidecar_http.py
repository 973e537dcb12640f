"""The real sidecar process over HTTP: real NIH images in, one normalised map per label out."""

import time

import httpx
import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import ModelCard
from service.gradcam_protocol import GRADCAM_PATH, GradCamResponse, decode_array, encode_array

pytestmark = pytest.mark.slow


def _body(image: np.ndarray, labels: list[str], **extra: object) -> dict[str, object]:
    return {"tensor": encode_array(image), "shape": list(image.shape), "labels": labels, **extra}


def _heatmaps(
    client: httpx.Client, image: np.ndarray, labels: list[str], **extra: object
) -> dict[str, np.ndarray]:
    response = client.post(GRADCAM_PATH, json=_body(image, labels, **extra))
    assert response.status_code == 200, response.text
    answer = GradCamResponse.model_validate(response.json())
    assert answer.gradient_of == "logit"
    assert set(answer.heatmaps) == set(labels)
    return {label: decode_array(answer.heatmaps[label], answer.heatmap_shape) for label in labels}


def test_readyz_names_the_served_weights(sidecar_client: httpx.Client, card: ModelCard) -> None:
    body = sidecar_client.get("/readyz").json()
    assert (body["status"], body["sha256"], body["layer"]) == ("ready", card.sha256, card.last_conv_layer)
    # Who this process is, so the API notices a restart: a uuid4 hex and a start time in the past.
    assert len(body["instance_id"]) == 32 and 0 < time.time() - body["started_at"] < 86400
    assert sidecar_client.get("/healthz").json() == {"status": "ok"}


def test_no_docs_pages_only_the_schema(sidecar_client: httpx.Client) -> None:
    """The docs pages would load Swagger UI from a CDN; the schema itself stays available."""
    assert sidecar_client.get("/docs").status_code == 404
    assert sidecar_client.get("/redoc").status_code == 404
    assert GRADCAM_PATH in sidecar_client.get("/openapi.json").json()["paths"]


def test_maps_have_feature_map_shape_and_range(
    sidecar_client: httpx.Client, fixture_inputs: dict[str, np.ndarray], card: ModelCard
) -> None:
    """DenseNet121 downsamples by 32: a 4 x 4 map at 128 px, 7 x 7 at 224 px. Each map is in [0, 1]
    with its maximum at 1, or all zero when the label has no positive evidence."""
    side = card.input_size // 32
    for name, image in fixture_inputs.items():
        response = sidecar_client.post(GRADCAM_PATH, json=_body(image, list(LABELS)))
        answer = GradCamResponse.model_validate(response.json())
        assert (answer.layer, answer.heatmap_shape) == (card.last_conv_layer, (side, side))
        for label, encoded in answer.heatmaps.items():
            heatmap = decode_array(encoded, answer.heatmap_shape)
            assert not np.isnan(heatmap).any(), (name, label)
            assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0, (name, label)
            assert heatmap.max() == 0.0 or np.isclose(heatmap.max(), 1.0), (name, label)


def test_labels_have_their_own_maps(
    sidecar_client: httpx.Client, fixture_inputs: dict[str, np.ndarray]
) -> None:
    """Each label is explained by its own kernel column: where several labels have evidence, their
    maps are not all the same and do not all peak at one place. A label whose weighted activations
    are negative everywhere (its logit below its bias) has an all-zero map, so some images have
    only one label in evidence; the model decides which, not the test."""
    compared = []
    for name, image in fixture_inputs.items():
        heatmaps = _heatmaps(sidecar_client, image, list(LABELS))
        with_evidence = [heatmap for heatmap in heatmaps.values() if heatmap.any()]
        if len(with_evidence) < 2:
            continue
        compared.append(name)
        assert len({heatmap.round(4).tobytes() for heatmap in with_evidence}) >= 2, name
        assert len({int(np.argmax(heatmap)) for heatmap in with_evidence}) >= 2, name
    assert len(compared) >= 2, f"only {compared} of the fixtures have two or more labels in evidence"


def test_one_label_alone_equals_it_among_all(
    sidecar_client: httpx.Client, fixture_inputs: dict[str, np.ndarray]
) -> None:
    image = next(iter(fixture_inputs.values()))
    together = _heatmaps(sidecar_client, image, list(LABELS))
    for label in ("Cardiomegaly", "Effusion", "Pneumothorax"):
        np.testing.assert_allclose(
            _heatmaps(sidecar_client, image, [label])[label], together[label], atol=1e-5
        )


def test_earlier_layer_on_request(
    sidecar_client: httpx.Client, fixture_inputs: dict[str, np.ndarray], card: ModelCard
) -> None:
    """pool4_relu, DenseNet121's last transition before the final dense block: 1/16 of the input.
    (Its gradient model is built and traced on this first use: seconds, not milliseconds.)"""
    image = next(iter(fixture_inputs.values()))
    heatmaps = _heatmaps(sidecar_client, image, list(LABELS), layer="pool4_relu")
    for heatmap in heatmaps.values():
        assert heatmap.shape == (card.input_size // 16, card.input_size // 16)
        assert np.isfinite(heatmap).all() and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert any(heatmap.any() for heatmap in heatmaps.values())


@pytest.mark.parametrize(
    ("case", "change", "status", "title"),
    [
        ("unknown label", {"labels": ["Effusion", "Tumour"]}, 422, "Unknown label"),
        ("unknown layer", {"layer": "no_such_layer"}, 422, "Unknown layer"),
        ("layer without a spatial map", {"layer": "avg_pool"}, 422, "Unknown layer"),
        ("shape is not the model's", {"shape": [64, 64, 3]}, 400, "Bad input tensor"),
        ("tensor not base64", {"tensor": "%%%"}, 400, "Bad input tensor"),
        ("tensor too short", {"tensor": encode_array(np.zeros(10, np.float32))}, 400, "Bad input tensor"),
        ("no labels", {"labels": []}, 400, "Malformed request"),
        ("shape of two numbers", {"shape": [128, 128]}, 400, "Malformed request"),
    ],
)
def test_errors_are_problem_details(
    sidecar_client: httpx.Client,
    fixture_inputs: dict[str, np.ndarray],
    case: str,
    change: dict[str, object],
    status: int,
    title: str,
) -> None:
    image = next(iter(fixture_inputs.values()))
    response = sidecar_client.post(GRADCAM_PATH, json={**_body(image, ["Effusion"]), **change})
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (status, title)
    assert problem["detail"]


def test_nan_tensor_is_refused(sidecar_client: httpx.Client, card: ModelCard) -> None:
    image = np.full((card.input_size, card.input_size, 3), np.nan, np.float32)
    assert sidecar_client.post(GRADCAM_PATH, json=_body(image, ["Effusion"])).status_code == 400
