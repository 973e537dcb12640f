"""A large JPEG is decoded at reduced scale (JPEG_REDUCED_DECODE): the answer stays that of the
full-size decode within what was measured on the NIH films, a PNG is never reduced, and a heatmap
as large as the image is still allowed."""

import io
from collections.abc import Iterator

import numpy as np
import pytest
from api_helpers import MakeSettings, Serve
from fastapi.testclient import TestClient
from PIL import Image

from cxr.imaging import decode_image
from service.api.ood import ANALYSIS_SIZE

# Measured on all 388 shared NIH films saved as JPEG (quality 95): largest change 0.018, mean 0.0014.
MAX_PROBABILITY_CHANGE = 0.03


@pytest.fixture(scope="module")
def radiograph_jpeg(radiograph_png: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(radiograph_png)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def full_decode_client(serve: Serve, make_settings: MakeSettings) -> Iterator[TestClient]:
    with serve(make_settings(jpeg_reduced_decode="false")) as test_client:
        yield test_client


def probabilities(client: TestClient, image: bytes, name: str, **params: str) -> np.ndarray:
    response = client.post("/v1/predict", params=params, files={"file": (name, image, "image/jpeg")})
    assert response.status_code == 200, response.text
    return np.array(list(response.json()["probabilities"].values()))


def test_the_reduced_decode_keeps_enough_pixels(radiograph_jpeg: bytes, radiograph_png: bytes) -> None:
    assert decode_image(radiograph_jpeg).pixels.shape == (1024, 1024)
    assert decode_image(radiograph_jpeg, min_side=ANALYSIS_SIZE).pixels.shape == (256, 256)
    assert decode_image(radiograph_jpeg, min_side=300).pixels.shape == (512, 512)
    assert decode_image(radiograph_png, min_side=ANALYSIS_SIZE).pixels.shape == (1024, 1024)


def test_a_reduced_jpeg_answers_like_the_full_decode(
    client: TestClient, full_decode_client: TestClient, radiograph_jpeg: bytes
) -> None:
    reduced = probabilities(client, radiograph_jpeg, "film.jpg")
    full = probabilities(full_decode_client, radiograph_jpeg, "film.jpg")
    assert np.abs(reduced - full).max() <= MAX_PROBABILITY_CHANGE


def test_a_heatmap_as_large_as_the_image_is_still_allowed(client: TestClient, radiograph_jpeg: bytes) -> None:
    response = client.post(
        "/v1/predict",
        params={"heatmaps": "top:1", "heatmap_size": "1024"},
        files={"file": ("film.jpg", radiograph_jpeg, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["heatmaps"]) == 1
