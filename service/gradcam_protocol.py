"""What the API and the Grad-CAM sidecar send each other over HTTP (pydantic + numpy only).

The API sends the already preprocessed input tensor, so both processes see the identical input;
the sidecar answers with one normalised heatmap per label at the feature map's resolution, and
the API does all resizing, colouring and PNG encoding.
"""

import base64

import numpy as np
from pydantic import BaseModel, Field

GRADCAM_PATH = "/v1/gradcam"


def encode_array(array: np.ndarray) -> str:
    """Base64 of the little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def decode_array(text: str, shape: tuple[int, ...]) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    expected = int(np.prod(shape)) * 4
    if len(raw) != expected:
        raise ValueError(f"array has {len(raw)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


class GradCamRequest(BaseModel):
    tensor: str = Field(description="Base64 float32 bytes of the preprocessed (size, size, 3) input.")
    shape: tuple[int, int, int]
    labels: list[str] = Field(min_length=1, description="Labels to explain, canonical names.")
    layer: str | None = Field(
        default=None, description="Layer to explain at; default the card's last conv layer."
    )


class GradCamResponse(BaseModel):
    layer: str
    gradient_of: str = Field(default="logit", description="Grad-CAM differentiates the pre-sigmoid logit.")
    heatmap_shape: tuple[int, int]
    heatmaps: dict[str, str] = Field(description="Label -> base64 float32 map in [0, 1], heatmap_shape.")
    seconds: float
