"""The pure Grad-CAM function in-process: the epsilon guard, batching, layers, the logit."""

import keras
import numpy as np
import pytest

from cxr.labels import LABELS
from service.sidecar import gradcam

ALL_LABELS = list(range(len(LABELS)))


def _tiny_model(conv_kernel: str) -> keras.Model:
    """The served model's layout (relu -> avg_pool -> predictions) on a 16 px input."""
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(4, 3, padding="same", kernel_initializer=conv_kernel)(inputs)
    features = keras.layers.Activation("relu", name="relu")(conv)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    return keras.Model(
        inputs, keras.layers.Dense(len(LABELS), activation="sigmoid", name="predictions")(pooled)
    )


@pytest.mark.parametrize(
    ("case", "layer_output", "logit_gradients"),
    [
        ("zero feature map", np.zeros((4, 4, 8), np.float32), np.ones((3, 4, 4, 8), np.float32)),
        ("zero gradients", np.ones((4, 4, 8), np.float32), np.zeros((3, 4, 4, 8), np.float32)),
        ("only negative evidence", np.ones((4, 4, 8), np.float32), -np.ones((3, 4, 4, 8), np.float32)),
    ],
)
def test_heatmaps_of_no_evidence_are_zero_not_nan(
    case: str, layer_output: np.ndarray, logit_gradients: np.ndarray
) -> None:
    heatmaps = gradcam.heatmaps_from_gradients(layer_output, logit_gradients)
    assert heatmaps.shape == (3, 4, 4)
    assert not np.isnan(heatmaps).any()
    assert (heatmaps == 0).all()


def test_heatmaps_are_relu_of_gradient_weighted_channels() -> None:
    layer_output = np.stack([np.eye(2), np.ones((2, 2))], axis=-1).astype(np.float32)  # (2, 2, 2)
    logit_gradients = np.zeros((1, 2, 2, 2), np.float32)
    logit_gradients[0, ..., 0], logit_gradients[0, ..., 1] = 4.0, -1.0  # weights 4 and -1
    expected = np.maximum(4 * np.eye(2) - 1, 0) / 3
    np.testing.assert_allclose(gradcam.heatmaps_from_gradients(layer_output, logit_gradients)[0], expected)


@pytest.mark.slow
def test_dead_feature_map_gives_zero_maps() -> None:
    """A feature map of zeros (all-zero conv kernel, ReLU): Grad-CAM stays zero, never NaN."""
    gradient_model = gradcam.build_gradient_model(_tiny_model("zeros"), "relu")
    heatmaps = gradcam.grad_cam(gradient_model, np.ones((16, 16, 3), np.float32), ALL_LABELS)
    assert heatmaps.shape == (len(LABELS), 16, 16)
    assert not np.isnan(heatmaps).any()
    assert (heatmaps == 0).all()


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["no_such_layer", "avg_pool", "predictions"])
def test_layer_must_be_a_spatial_feature_map(layer: str) -> None:
    with pytest.raises(gradcam.UnknownLayerError, match=layer):
        gradcam.build_gradient_model(_tiny_model("glorot_uniform"), layer)


@pytest.mark.slow
def test_gradient_model_outputs_the_logit(
    served_model: keras.Model,
    default_gradient_model: gradcam.GradientModel,
    fixture_inputs: dict[str, np.ndarray],
) -> None:
    """sigmoid(logits) of the gradient model are the served model's probabilities."""
    batch = np.stack(list(fixture_inputs.values()))
    _, logits = default_gradient_model.model(batch, training=False)
    probabilities = served_model(batch, training=False)
    np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(logits))), np.asarray(probabilities), atol=1e-5)


@pytest.mark.slow
def test_one_batched_pass_equals_one_label_at_a_time(
    default_gradient_model: gradcam.GradientModel, fixture_inputs: dict[str, np.ndarray]
) -> None:
    image = next(iter(fixture_inputs.values()))
    together = gradcam.grad_cam(default_gradient_model, image, ALL_LABELS)
    assert together.shape == (len(LABELS), *default_gradient_model.heatmap_shape)
    for index in ALL_LABELS:
        alone = gradcam.grad_cam(default_gradient_model, image, [index])
        np.testing.assert_allclose(alone[0], together[index], atol=1e-5)
