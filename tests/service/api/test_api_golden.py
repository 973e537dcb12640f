"""Golden test: the service answers the shipped model's recorded probabilities on the fixture films.

golden_probabilities.json (written by `python -m export.golden` from the Keras weights) travels with
the model. Through the API's whole path (upload, decode, shared preprocessing, onnxruntime) each
probability must match to 1e-4: a change to decoding or preprocessing fails here instead of
silently skewing serving away from training.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from api_helpers import predict_probabilities
from fastapi.testclient import TestClient
from PIL import Image

from cxr.imaging import decode_image
from cxr.labels import LABELS
from service.api.model_runtime import ModelRuntime

TOLERANCE = 1e-4
GOLDEN_FILE = "golden_probabilities.json"  # export.golden's (imported, it would load TensorFlow)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def golden(model_dir: Path, runtime: ModelRuntime) -> dict[str, dict[str, float]]:
    path = model_dir / GOLDEN_FILE
    if not path.is_file():
        if (REPO / "models") in model_dir.resolve().parents:
            pytest.fail(f"{path} is missing: a shipped model carries it (python -m export.golden)")
        pytest.skip(f"{model_dir} has no {GOLDEN_FILE}")
    data = json.loads(path.read_text())
    regenerate = f"python -m export.golden --model-dir {model_dir}"
    assert data["model"]["sha256"] == runtime.card.sha256, f"{path} is for other weights: {regenerate}"
    images: dict[str, dict[str, float]] = data["images"]
    return images


def largest_difference(expected: dict[str, float], actual: dict[str, float]) -> float:
    assert list(actual) == list(LABELS)
    return max(abs(actual[label] - expected[label]) for label in LABELS)


def test_the_service_answers_the_golden_probabilities(
    client: TestClient, golden: dict[str, dict[str, float]], fixture_images: list[Path]
) -> None:
    assert sorted(golden) == [path.name for path in fixture_images]
    differences = {
        path.name: largest_difference(golden[path.name], predict_probabilities(client, path.read_bytes()))
        for path in fixture_images
    }
    assert max(differences.values()) <= TOLERANCE, f"largest |difference| per film: {differences}"


def test_another_resize_filter_would_fail_the_golden_check(
    runtime: ModelRuntime, golden: dict[str, dict[str, float]], fixture_images: list[Path]
) -> None:
    """The check has teeth: nearest-neighbour instead of the shared antialiased bilinear resize."""
    differences = []
    for path in fixture_images:
        pixels = decode_image(path.read_bytes()).pixels
        size = runtime.input_size
        resized = np.asarray(Image.fromarray(pixels).resize((size, size), Image.Resampling.NEAREST))
        card = runtime.card.normalisation
        tensor = np.repeat(((resized - card.mean) / card.std)[..., np.newaxis], 3, axis=-1).astype(np.float32)
        probabilities = runtime.predict(tensor).probabilities
        differences.append(
            largest_difference(golden[path.name], dict(zip(LABELS, map(float, probabilities), strict=True)))
        )
    assert max(differences) > 10 * TOLERANCE
