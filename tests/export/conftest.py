"""A tiny random-weight model saved with a valid card, and its export (converted once per session)."""

import csv
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from cxr.labels import LABELS
from cxr.model_card import (
    ModelCard,
    Normalisation,
    TrainingData,
    load_model_card,
    save_model_card,
    sha256_file,
)
from cxr.preprocessing import preprocess_bytes
from export.convert import build_export_model, load_keras_model
from export.pipeline import SPLITS_FILE, ExportOptions, export_model
from training.model import HEAD_LAYER, LAST_CONV_LAYER, build_model

logger = logging.getLogger(__name__)

INPUT_SIZE = 64  # DenseNet121's smallest comfortable input: a (2, 2, 1024) feature map
# Fixture images by split: the int8 test calibrates on "train" and scores AUROC on "test".
SPLITS = {
    "00000001_000.png": "train",
    "00000002_000.png": "train",
    "00000404_000.png": "test",
    "00004001_000.png": "test",
}


def write_model_dir(model: keras.Model, model_dir: Path) -> ModelCard:
    """model.keras + a card that describes it + splits.csv, as training writes them."""
    model_dir.mkdir(parents=True, exist_ok=True)
    model.save(model_dir / "model.keras")
    card = ModelCard(
        name="tiny-test-model",
        version="0.0.0",
        created="2026-11-23",
        labels=list(LABELS),
        input_size=INPUT_SIZE,
        normalisation=Normalisation(mean=0.5, std=0.25),
        thresholds=dict.fromkeys(LABELS, 0.5),
        threshold_rule="fixed 0.5 (random-weight test model)",
        last_conv_layer=LAST_CONV_LAYER,
        weights_file="model.keras",
        sha256=sha256_file(model_dir / "model.keras"),
        training=TrainingData(
            dataset="none: random weights",
            split_rule="fixture images, fixed",
            n_train=2,
            n_validation=0,
            n_test=2,
            seed=0,
        ),
    )
    save_model_card(card, model_dir)
    with open(model_dir / SPLITS_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image", "PatientId", "split"])
        for image, split in SPLITS.items():
            writer.writerow([image, int(image.split("_")[0]), split])
    return card


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras.utils.set_random_seed(7)
    model_dir = tmp_path_factory.mktemp("tiny-model")
    write_model_dir(build_model(input_size=INPUT_SIZE), model_dir)
    return model_dir


@pytest.fixture(scope="session")
def exported(
    tiny_model_dir: Path, fixture_images: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The build folder of the whole export run, made once: tracing DenseNet121 takes about a minute."""
    out_dir = tmp_path_factory.mktemp("build")
    started = time.perf_counter()
    export_model(tiny_model_dir, out_dir, ExportOptions(parity_images=fixture_images))
    logger.info("tiny model exported in %.1f s", time.perf_counter() - started)
    return out_dir


@pytest.fixture
def model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny model folder that a test may damage."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path) -> keras.Model:
    """The saved tiny model, loaded once (a DenseNet121 load takes seconds to a minute here)."""
    return load_keras_model(load_model_card(tiny_model_dir), tiny_model_dir)


@pytest.fixture(scope="session")
def two_outputs(tiny_model: keras.Model) -> keras.Model:
    """The export graph over the loaded tiny model's layers (shared: tests restore what they change)."""
    return build_export_model(tiny_model, LAST_CONV_LAYER)


@pytest.fixture
def shifted_head(two_outputs: keras.Model) -> Iterator[keras.Model]:
    """The export graph with its head bias shifted by 0.05, so that it no longer matches the ONNX file."""
    head = two_outputs.get_layer(HEAD_LAYER)
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + 0.05])
    try:
        yield two_outputs
    finally:
        head.set_weights([kernel, bias])


@pytest.fixture(scope="session")
def fixture_inputs(tiny_model_dir: Path, fixture_images: list[Path]) -> np.ndarray:
    """The fixture radiographs as the tiny model's (N, 64, 64, 3) input, by the project's preprocessing."""
    card = load_model_card(tiny_model_dir)
    size, mean, std = card.input_size, card.normalisation.mean, card.normalisation.std
    return np.stack([preprocess_bytes(path.read_bytes(), size, mean, std) for path in fixture_images])
