"""The network: DenseNet121 + pooling + a 14-way sigmoid head, with the layers the card names."""

from pathlib import Path

import keras
import numpy as np
import pytest

from cxr.labels import LABELS
from training.model import HEAD_LAYER, LAST_CONV_LAYER, build_model, head_weights


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_model(32)


def test_the_model_maps_an_image_to_14_probabilities(model: keras.Model) -> None:
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, len(LABELS))
    probabilities = np.asarray(model(np.zeros((2, 32, 32, 3), dtype=np.float32), training=False))
    assert probabilities.shape == (2, 14) and ((probabilities > 0) & (probabilities < 1)).all()


def test_the_card_layer_names_exist(model: keras.Model) -> None:
    feature_map = model.get_layer(LAST_CONV_LAYER).output
    assert len(feature_map.shape) == 4 and feature_map.shape[-1] == 1024
    kernel, bias = head_weights(model)
    assert kernel.shape == (1024, 14) and bias.shape == (14,)
    assert model.get_layer(HEAD_LAYER).activation.__name__ == "sigmoid"


def test_a_missing_backbone_weights_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="backbone weights file"):
        build_model(32, weights=str(tmp_path / "absent.h5"))
