"""Request checks that need no TensorFlow: the tensor and the label list."""

import numpy as np
import pytest

from cxr.labels import LABELS
from service.gradcam_protocol import GradCamRequest, encode_array
from service.sidecar.errors import BadTensorError, TooManyLabelsError, UnknownLabelError
from service.sidecar.validation import decode_input, select_labels

SIZE = 8


def _request(
    tensor: np.ndarray, shape: tuple[int, int, int] = (SIZE, SIZE, 3), encoded: str | None = None
) -> GradCamRequest:
    return GradCamRequest(tensor=encoded or encode_array(tensor), shape=shape, labels=["Mass"])


def test_decode_input_returns_the_tensor() -> None:
    tensor = np.random.default_rng(0).normal(size=(SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(decode_input(_request(tensor), SIZE), tensor)


@pytest.mark.parametrize(
    ("case", "request_"),
    [
        ("shape is not the model's", _request(np.zeros((4, 4, 3), np.float32), shape=(4, 4, 3))),
        ("bytes do not match the shape", _request(np.zeros((4, 4, 3), np.float32))),
        ("not base64", _request(np.zeros(0), encoded="not base64!")),
        ("NaN", _request(np.full((SIZE, SIZE, 3), np.nan, np.float32))),
        ("infinity", _request(np.full((SIZE, SIZE, 3), np.inf, np.float32))),
    ],
)
def test_decode_input_refuses(case: str, request_: GradCamRequest) -> None:
    with pytest.raises(BadTensorError):
        decode_input(request_, SIZE)


def test_select_labels_keeps_request_order_and_drops_duplicates() -> None:
    assert select_labels(["Mass", "Atelectasis", "Mass"], list(LABELS), 14) == {"Mass": 9, "Atelectasis": 0}


def test_select_labels_refuses_unknown_label() -> None:
    with pytest.raises(UnknownLabelError, match="Tumour"):
        select_labels(["Mass", "Tumour"], list(LABELS), 14)


def test_select_labels_refuses_too_many() -> None:
    with pytest.raises(TooManyLabelsError):
        select_labels(list(LABELS[:3]), list(LABELS), 2)
