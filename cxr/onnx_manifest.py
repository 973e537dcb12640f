"""The manifest the export step writes beside the ONNX file, and that the API checks at start-up."""

from pathlib import Path

from pydantic import BaseModel, Field

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
INT8_ONNX_FILE = "model.int8.onnx"
# onnxruntime's calibration cache: the int8 tensors' ranges, kept beside the model so that an
# export without the calibration images rebuilds the same int8 file.
CALIBRATION_RANGES_FILE = "int8_calibration.json"
HEAD_FILE = "head.npz"  # Dense kernel (channels, 14) and bias (14,) for the CAM fast path
INPUT_NAME = "input"
PROBABILITIES_OUTPUT = "probabilities"
FEATURE_MAP_OUTPUT = "feature_map"


class Parity(BaseModel):
    images: list[str] = Field(description="Real images run through Keras and onnxruntime.")
    max_abs_diff_probabilities: float
    max_abs_diff_feature_map: float
    tolerance: float


class Quantization(BaseModel):
    file: str
    sha256: str
    calibration_images: int
    calibration_sha256: str | None = Field(
        default=None, description=f"sha256 of the {CALIBRATION_RANGES_FILE} it was quantised with."
    )
    auroc_fp32: float | None = None
    auroc_int8: float | None = None
    evaluated_on: str | None = None
    seconds_per_image_fp32: float | None = None
    seconds_per_image_int8: float | None = None


class ExportManifest(BaseModel):
    onnx_file: str = ONNX_FILE
    onnx_sha256: str
    head_file: str = HEAD_FILE
    head_sha256: str
    keras_sha256: str = Field(
        description="sha256 of the Keras weights the ONNX was built from (= card sha256)."
    )
    input_size: int
    feature_map_shape: tuple[int, int, int] = Field(description="(h, w, channels) of the feature map output.")
    opset: int
    versions: dict[str, str]
    parity: Parity
    quantization: Quantization | None = None


def load_manifest(onnx_dir: str | Path) -> ExportManifest:
    return ExportManifest.model_validate_json((Path(onnx_dir) / MANIFEST_FILE).read_text())
