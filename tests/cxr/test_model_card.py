"""The model card: schema rules, round trip, weights check."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from cxr.labels import LABELS
from cxr.model_card import (
    MODEL_CARD_FILE,
    ModelCard,
    ModelCardMismatchError,
    Normalisation,
    TrainingData,
    load_model_card,
    save_model_card,
    sha256_file,
    verify_weights,
)


def card_fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "name": "toy",
        "version": "0.0.1",
        "created": "2026-01-01",
        "labels": list(LABELS),
        "input_size": 32,
        "normalisation": Normalisation(mean=0.5, std=0.25),
        "thresholds": dict.fromkeys(LABELS, 0.5),
        "threshold_rule": "0.5",
        "last_conv_layer": "relu",
        "weights_file": "model.keras",
        "sha256": "a" * 64,
        "training": TrainingData(
            dataset="toy", split_rule="toy", n_train=1, n_validation=1, n_test=1, seed=0
        ),
    }
    return fields | changes


def test_a_complete_card_validates() -> None:
    card = ModelCard(**card_fields())  # type: ignore[arg-type]
    assert card.metrics == [] and card.metrics_for("test") is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": list(reversed(LABELS))}, "14 canonical labels in order"),
        ({"labels": list(LABELS[:13])}, "14 canonical labels in order"),
        ({"thresholds": dict.fromkeys(LABELS[:13], 0.5)}, "thresholds must name every label"),
        ({"thresholds": dict.fromkeys(LABELS, 0.5) | {"Mass": 1.5}}, "threshold of Mass is 1.5"),
        ({"sha256": "abc"}, "at least 64 characters"),
        ({"input_size": 0}, "greater than 0"),
        ({"normalisation": {"mean": 0.5, "std": 0}}, "greater than 0"),
    ],
)
def test_invalid_cards_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelCard(**card_fields(**changes))  # type: ignore[arg-type]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    card = ModelCard(**card_fields())  # type: ignore[arg-type]
    path = save_model_card(card, tmp_path)
    assert path == tmp_path / MODEL_CARD_FILE
    assert load_model_card(tmp_path) == card


def test_verify_weights_checks_the_sha256(tmp_path: Path) -> None:
    weights = tmp_path / "model.keras"
    weights.write_bytes(b"weights")
    card = ModelCard(**card_fields(sha256=sha256_file(weights)))  # type: ignore[arg-type]
    assert verify_weights(card, tmp_path) == weights
    weights.write_bytes(b"other weights")
    with pytest.raises(ModelCardMismatchError, match="the model card says"):
        verify_weights(card, tmp_path)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="named by the model card is missing"):
        verify_weights(card, tmp_path)


def test_sha256_file_is_the_hex_digest(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
