"""The served model: model card + ONNX export, checked against each other, run with onnxruntime.

`load_model_runtime` refuses (ModelLoadError naming the file and the problem) anything that does
not hold together: a card or manifest that is missing or invalid, an export made from other
weights, a file whose sha256 is not the manifest's, input/output shapes that disagree with the
card or the CAM head, or an ONNX graph whose probabilities are not sigmoid(GAP(feature map) @
kernel + bias) on a real input passed through the shared preprocessing.

With precision "int8" the checks above run on the fp32 graph first (the int8 file is made from it);
then the int8 file the manifest names is read, checked against the manifest's sha256 and served.
"""

import hashlib
import io
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from PIL import Image
from pydantic import ValidationError

from cxr.labels import LABELS
from cxr.model_card import MODEL_CARD_FILE, ModelCard
from cxr.onnx_manifest import (
    FEATURE_MAP_OUTPUT,
    INPUT_NAME,
    MANIFEST_FILE,
    PROBABILITIES_OUTPUT,
    ExportManifest,
)
from cxr.preprocessing import preprocess_pixels

SELF_CHECK_TOLERANCE = 1e-4
Precision = Literal["fp32", "int8"]


class ModelLoadError(RuntimeError):
    """The model files cannot be served; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Prediction:
    probabilities: np.ndarray  # (14,) in LABELS order
    feature_map: np.ndarray  # (h, w, channels), float32


@dataclass(frozen=True)
class ModelRuntime:
    card: ModelCard
    manifest: ExportManifest
    session: ort.InferenceSession
    kernel: np.ndarray  # (channels, 14)
    bias: np.ndarray  # (14,)
    precision: Precision = "fp32"
    # The same graph with fewer threads (1 by default, no spinning), for inferences that run while
    # other requests are in flight: then the cores are taken by them, and a wide thread pool only
    # adds synchronisation (measured CPU per inference in the README's Performance section).
    loaded_session: ort.InferenceSession | None = None

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def preprocess(self, pixels: np.ndarray | Image.Image) -> np.ndarray:
        """Greyscale [0, 1] pixels -> the (size, size, 3) model input (the shared preprocessing)."""
        normalisation = self.card.normalisation
        return preprocess_pixels(pixels, self.card.input_size, normalisation.mean, normalisation.std)

    def predict(self, tensor: np.ndarray, alone: bool = True) -> Prediction:
        """Run one preprocessed (size, size, 3) input; `alone`: no other request is in flight."""
        batch = np.ascontiguousarray(tensor[np.newaxis], dtype=np.float32)
        session = self.session if alone or self.loaded_session is None else self.loaded_session
        probabilities, feature_map = session.run(
            [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT], {INPUT_NAME: batch}
        )
        return Prediction(
            np.asarray(probabilities[0], dtype=np.float64), np.asarray(feature_map[0], np.float32)
        )


def session_options(
    intra_op_threads: int, inter_op_threads: int, allow_spinning: bool = True
) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Spinning keeps idle pool threads busy-waiting for the next parallel section: lower latency
    # for one request alone, CPU taken from concurrent requests' decoding under load.
    if not allow_spinning:  # onnxruntime's default is to spin; callers may still set the entry
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    else:
        # Spin between the parallel sections of a run, never after it: the pool stops when the last
        # run returns, so it cannot take the core the next request decodes on.
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not actionable here
    return options


def load_model_runtime(
    model_dir: Path,
    onnx_dir: Path,
    intra_op_threads: int = 1,
    inter_op_threads: int = 1,
    *,
    precision: Precision = "fp32",
    allow_spinning: bool = True,
    threads_under_load: int = 0,
) -> ModelRuntime:
    """The checked model; `threads_under_load` > 0 (and not `intra_op_threads`) adds a second
    session with that many threads and no spinning, used by `predict(..., alone=False)`."""
    card = _load_card(Path(model_dir) / MODEL_CARD_FILE)
    manifest_path = Path(onnx_dir) / MANIFEST_FILE
    manifest = _load_manifest(manifest_path)
    if manifest.keras_sha256 != card.sha256:
        raise ModelLoadError(
            manifest_path,
            f"the export was made from weights with sha256 {manifest.keras_sha256}, "
            f"but the model card ({Path(model_dir) / MODEL_CARD_FILE}) describes weights {card.sha256}",
        )
    if manifest.input_size != card.input_size:
        raise ModelLoadError(
            manifest_path, f"input size {manifest.input_size} differs from the model card's {card.input_size}"
        )
    onnx_path = Path(onnx_dir) / manifest.onnx_file
    onnx_bytes = _read_checked(onnx_path, manifest.onnx_sha256)
    head_path = Path(onnx_dir) / manifest.head_file
    kernel, bias = _load_head(head_path, _read_checked(head_path, manifest.head_sha256))
    options = session_options(intra_op_threads, inter_op_threads, allow_spinning)
    session = _open_session(onnx_path, onnx_bytes, options)
    _check_signature(onnx_path, session, card.input_size, kernel.shape[0])
    runtime = ModelRuntime(card, manifest, session, kernel, bias)
    self_check(runtime, onnx_path)
    if precision == "int8":
        onnx_path, onnx_bytes = _read_int8(manifest, manifest_path)
        session = _open_session(onnx_path, onnx_bytes, options)
        _check_signature(onnx_path, session, card.input_size, kernel.shape[0])
        runtime = replace(runtime, session=session, precision="int8")
    if threads_under_load and threads_under_load != intra_op_threads:
        loaded_options = session_options(threads_under_load, 1, allow_spinning=False)
        runtime = replace(runtime, loaded_session=_open_session(onnx_path, onnx_bytes, loaded_options))
    return runtime


def _read_int8(manifest: ExportManifest, manifest_path: Path) -> tuple[Path, bytes]:
    """The int8 file of the export, checked against the sha256 the export recorded for it."""
    if manifest.quantization is None:
        raise ModelLoadError(
            manifest_path,
            "MODEL_PRECISION=int8, but the export has no int8 model: build it with `make export` (from "
            "the ranges recorded beside the model) or `make export-int8`, or set MODEL_PRECISION=fp32",
        )
    path = manifest_path.parent / manifest.quantization.file
    return path, _read_checked(path, manifest.quantization.sha256)


def self_check(runtime: ModelRuntime, onnx_path: Path) -> None:
    """The graph's probabilities must equal sigmoid(mean_hw(feature_map) @ kernel + bias)."""
    size = runtime.input_size
    rows, columns = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    # Smooth and varied, radiograph-like: bright edges, a darker rounded centre.
    pixels = np.clip(0.35 + 0.4 * ((rows - 0.5) ** 2 + (columns - 0.5) ** 2) * 2 + 0.1 * rows, 0.0, 1.0)
    prediction = runtime.predict(runtime.preprocess(pixels))
    if prediction.probabilities.shape != (len(LABELS),):
        raise ModelLoadError(
            onnx_path, f"probabilities have shape {prediction.probabilities.shape}, not ({len(LABELS)},)"
        )
    expected_shape = tuple(runtime.manifest.feature_map_shape)
    if prediction.feature_map.shape != expected_shape:
        raise ModelLoadError(
            onnx_path,
            f"feature map has shape {prediction.feature_map.shape}, the manifest says {expected_shape}",
        )
    if not (np.all(np.isfinite(prediction.probabilities)) and np.all(np.isfinite(prediction.feature_map))):
        raise ModelLoadError(onnx_path, "the self-check input gave non-finite outputs")
    pooled = prediction.feature_map.astype(np.float64).mean(axis=(0, 1))
    logits = pooled @ runtime.kernel.astype(np.float64) + runtime.bias.astype(np.float64)
    expected = 1.0 / (1.0 + np.exp(-logits))
    difference = float(np.max(np.abs(prediction.probabilities - expected)))
    if difference > SELF_CHECK_TOLERANCE:
        raise ModelLoadError(
            onnx_path,
            f"probabilities differ from sigmoid(GAP(feature_map) @ kernel + bias) by {difference:.2e} "
            f"(tolerance {SELF_CHECK_TOLERANCE:g}): head.npz does not belong to this graph",
        )


def _load_card(path: Path) -> ModelCard:
    if not path.is_file():
        raise ModelLoadError(path, "model card not found (set MODEL_DIR to the model's directory)")
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ModelLoadError(path, f"not a valid model card: {_first_error(error)}") from None


def _load_manifest(path: Path) -> ExportManifest:
    if not path.is_file():
        raise ModelLoadError(
            path, "export manifest not found (set ONNX_DIR to the output of `python -m export`)"
        )
    try:
        return ExportManifest.model_validate_json(path.read_bytes())
    except ValidationError as error:
        raise ModelLoadError(path, f"not a valid export manifest: {_first_error(error)}") from None


def _first_error(error: ValidationError) -> str:
    first = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else str(first["msg"])


def _read_checked(path: Path, expected_sha256: str) -> bytes:
    if not path.is_file():
        raise ModelLoadError(path, "file named by the export manifest not found")
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelLoadError(path, f"sha256 is {actual}, the export manifest says {expected_sha256}")
    return data


def _load_head(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as head:
            kernel, bias = np.asarray(head["kernel"], np.float32), np.asarray(head["bias"], np.float32)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise ModelLoadError(
            path, f"not a head file with 'kernel' and 'bias' arrays ({type(error).__name__})"
        ) from None
    if kernel.ndim != 2 or kernel.shape[1] != len(LABELS) or bias.shape != (len(LABELS),):
        raise ModelLoadError(
            path,
            f"kernel {kernel.shape} and bias {bias.shape} must be (channels, {len(LABELS)}) "
            f"and ({len(LABELS)},)",
        )
    return kernel, bias


def _open_session(path: Path, data: bytes, options: ort.SessionOptions) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own pybind exception types
        first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise ModelLoadError(
            path, f"onnxruntime cannot load it ({type(error).__name__}: {first_line})"
        ) from None


def _check_signature(path: Path, session: ort.InferenceSession, size: int, channels: int) -> None:
    inputs = {node.name: node.shape for node in session.get_inputs()}
    outputs = {node.name: node.shape for node in session.get_outputs()}
    if INPUT_NAME not in inputs:
        raise ModelLoadError(path, f"graph has no input named {INPUT_NAME!r} (inputs: {', '.join(inputs)})")
    input_shape = list(inputs[INPUT_NAME])
    if len(input_shape) != 4 or any(
        _dim(d) not in (want, None) for d, want in zip(input_shape[1:], (size, size, 3), strict=True)
    ):
        raise ModelLoadError(
            path, f"input shape is {input_shape}; the model card needs (N, {size}, {size}, 3)"
        )
    for name in (PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT):
        if name not in outputs:
            raise ModelLoadError(path, f"graph has no output named {name!r} (outputs: {', '.join(outputs)})")
    probabilities_shape = list(outputs[PROBABILITIES_OUTPUT])
    if len(probabilities_shape) != 2 or _dim(probabilities_shape[1]) not in (len(LABELS), None):
        raise ModelLoadError(
            path, f"probabilities shape is {probabilities_shape}; expected (N, {len(LABELS)})"
        )
    feature_shape = list(outputs[FEATURE_MAP_OUTPUT])
    if len(feature_shape) != 4 or _dim(feature_shape[3]) not in (channels, None):
        raise ModelLoadError(
            path, f"feature map shape is {feature_shape}; head.npz has {channels} kernel rows (channels)"
        )


def _dim(value: object) -> int | None:
    """A static dimension, or None when the graph leaves it symbolic."""
    return value if isinstance(value, int) else None
