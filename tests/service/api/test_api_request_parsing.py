"""Base64 images in JSON bodies."""

import base64

import pytest

from service.api.problems import Problem
from service.api.request_parsing import decode_base64_image

DATA = bytes(range(256)) * 3 + b"\xff\xfe"
STANDARD = base64.b64encode(DATA).decode()


@pytest.mark.parametrize(
    "text",
    [
        STANDARD,
        STANDARD.rstrip("="),
        base64.urlsafe_b64encode(DATA).decode(),
        base64.urlsafe_b64encode(DATA).decode().rstrip("="),
        "data:image/png;base64," + STANDARD,
        "data:application/dicom;base64," + STANDARD,
        base64.encodebytes(DATA).decode(),  # MIME: lines of 76 characters
        f"  {STANDARD}\n",
    ],
)
def test_accepted_forms(text: str) -> None:
    assert decode_base64_image(text) == DATA


@pytest.mark.parametrize(
    "text", ["", "   ", "data:image/png;base64,", "not base64!", "abc$", STANDARD[:-3] + "*=="]
)
def test_refused_forms_are_400(text: str) -> None:
    with pytest.raises(Problem) as raised:
        decode_base64_image(text)
    assert raised.value.status == 400
