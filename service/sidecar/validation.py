"""Checks on a Grad-CAM request that need the model card but not TensorFlow."""

import numpy as np

from service.gradcam_protocol import GradCamRequest, decode_array
from service.sidecar.errors import BadTensorError, TooManyLabelsError, UnknownLabelError


def decode_input(request: GradCamRequest, input_size: int) -> np.ndarray:
    """The request's (input_size, input_size, 3) float32 tensor, after checking shape, bytes and values."""
    expected = (input_size, input_size, 3)
    if tuple(request.shape) != expected:
        raise BadTensorError(f"tensor shape {tuple(request.shape)} is not the model's input shape {expected}")
    try:
        tensor = decode_array(request.tensor, expected)
    except ValueError as error:  # not base64, or the wrong number of bytes
        raise BadTensorError(f"tensor is not base64 float32 of shape {expected}: {error}") from None
    if not np.isfinite(tensor).all():
        raise BadTensorError("tensor has NaN or infinite values")
    return tensor


def select_labels(requested: list[str], model_labels: list[str], max_labels: int) -> dict[str, int]:
    """Requested label -> its position in the model's output; duplicates dropped, request order kept."""
    unique = list(dict.fromkeys(requested))
    unknown = [label for label in unique if label not in model_labels]
    if unknown:
        raise UnknownLabelError(f"unknown labels {unknown}; expected some of: {', '.join(model_labels)}")
    if len(unique) > max_labels:
        raise TooManyLabelsError(f"{len(unique)} labels requested, at most {max_labels} per request")
    return {label: model_labels.index(label) for label in unique}
