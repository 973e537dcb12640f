"""One real Grad-CAM sidecar process for the session, and the fixture images as model inputs."""

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest
from processes import ServiceProcess, running_sidecar

from cxr.model_card import ModelCard, load_model_card
from cxr.preprocessing import preprocess_bytes

if TYPE_CHECKING:
    import keras

    from service.sidecar.gradcam import GradientModel


@pytest.fixture(scope="session")
def card(model_dir: Path) -> ModelCard:
    return load_model_card(model_dir)


@pytest.fixture(scope="session")
def fixture_inputs(fixture_images: list[Path], card: ModelCard) -> dict[str, np.ndarray]:
    """Image name -> its (size, size, 3) model input, through the one preprocessing path."""
    mean, std = card.normalisation.mean, card.normalisation.std
    return {
        path.name: preprocess_bytes(path.read_bytes(), card.input_size, mean, std) for path in fixture_images
    }


@pytest.fixture(scope="session")
def sidecar(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """`python -m service.sidecar` on a free port, ready (model loaded and traced)."""
    with running_sidecar(model_dir, tmp_path_factory.mktemp("sidecar-logs")) as process:
        yield process


@pytest.fixture(scope="session")
def sidecar_client(sidecar: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.base_url or "", timeout=120.0) as client:
        yield client


@pytest.fixture(scope="session")
def served_model(model_dir: Path, card: ModelCard) -> "keras.Model":
    """The Keras model in this test process (TensorFlow is imported only by tests that ask for it)."""
    import keras

    return keras.models.load_model(model_dir / card.weights_file, compile=False)


@pytest.fixture(scope="session")
def default_gradient_model(served_model: "keras.Model", card: ModelCard) -> "GradientModel":
    """The gradient model at the card's last conv layer, as the sidecar builds it."""
    from service.sidecar.gradcam import build_gradient_model

    return build_gradient_model(served_model, card.last_conv_layer)
