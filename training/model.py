"""The network: Keras DenseNet121 + global average pooling + Dense(14, sigmoid)."""

from pathlib import Path

import keras
import numpy as np

from cxr.labels import COURSE_LABELS, LABELS, reorder_indices

LAST_CONV_LAYER = "relu"  # DenseNet121's final BN-ReLU: the last feature map before pooling
HEAD_LAYER = "predictions"


class CourseWeightsError(ValueError):
    """A weights file that is not the course model's layout."""


def build_model(input_size: int, weights: str | None = None, labels: tuple[str, ...] = LABELS) -> keras.Model:
    """DenseNet121 backbone (random, "imagenet" or a backbone weights file) with a 14-way sigmoid head."""
    if weights is not None and weights != "imagenet" and not Path(weights).is_file():
        raise FileNotFoundError(f"backbone weights file {weights} not found")
    backbone = keras.applications.DenseNet121(
        include_top=False, weights=weights, input_shape=(input_size, input_size, 3)
    )
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    probabilities = keras.layers.Dense(len(labels), activation="sigmoid", name=HEAD_LAYER)(pooled)
    return keras.Model(backbone.input, probabilities, name="chexnet_densenet121")


def import_course_weights(weights_file: str | Path, input_size: int) -> keras.Model:
    """Load a course-layout weights file (head in COURSE_LABELS order) and return a canonical model.

    The course model is the same graph with its Dense outputs in another label order, so the
    import is a permutation of the head's kernel columns and bias.
    """
    course_model = build_model(input_size, labels=COURSE_LABELS)
    try:
        # A legacy .h5 file loads topologically: layer by layer in order, whatever the layer names.
        course_model.load_weights(str(weights_file))
    except ValueError as error:
        raise CourseWeightsError(f"{weights_file} does not fit the course model: {error}") from None
    model = build_model(input_size)
    model.set_weights(course_model.get_weights())
    kernel, bias = course_model.get_layer(HEAD_LAYER).get_weights()
    order = reorder_indices(COURSE_LABELS, LABELS)
    model.get_layer(HEAD_LAYER).set_weights([kernel[:, order], bias[order]])
    return model


def head_weights(model: keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """(kernel (channels, 14), bias (14,)) of the Dense head, for class activation maps."""
    kernel, bias = model.get_layer(HEAD_LAYER).get_weights()
    return kernel, bias
