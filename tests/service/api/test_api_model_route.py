"""GET /v1/model: the served model's card."""

import json
from pathlib import Path

from fastapi.testclient import TestClient

from cxr.labels import LABELS


def test_model_card(client: TestClient, model_dir: Path) -> None:
    response = client.get("/v1/model")
    assert response.status_code == 200
    card = response.json()
    on_disk = json.loads((model_dir / "model_card.json").read_text())
    assert card["labels"] == list(LABELS) == on_disk["labels"]
    for field in (
        "name",
        "version",
        "sha256",
        "input_size",
        "thresholds",
        "normalisation",
        "last_conv_layer",
    ):
        assert card[field] == on_disk[field], field
