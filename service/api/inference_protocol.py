"""The Open Inference Protocol's data plane for the one served model: metadata, request decoding
(JSON and the binary tensor data extension), the call into the prediction pipeline, the answer.

Inputs (exactly one per request):
    image   BYTES [N] (or [N, 1])         PNG, JPEG or DICOM files; in JSON each a base64 string
    input   FP32  [N, size, size, 3]      already preprocessed as cxr.preprocessing does
Outputs: probabilities FP32 [N, 14] (LABELS order; the default), feature_map FP32 [N, h, w, C]
(when asked for). Errors are `Problem`s, which /v2 answers as {"error": detail}.
"""

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from cxr.imaging import ImageError, ImageTooLargeError
from cxr.labels import LABELS
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, PROBABILITIES_OUTPUT
from service.api.model_runtime import ModelRuntime
from service.api.prediction import analyse_images, infer_tensors
from service.api.problems import Problem, describe_validation_errors
from service.api.request_parsing import decode_base64_image
from service.api.state import ServiceState
from service.api.v2_datamodels import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadataResponse,
    RequestInput,
    ResponseOutput,
)

HEADER_LENGTH = "Inference-Header-Content-Length"
IMAGE_INPUT = "image"
TENSOR_INPUT = INPUT_NAME
PLATFORM = "onnxruntime_onnx"
MAX_BATCH = 16  # images or tensors per request (the body limit also applies)
_LENGTH_PREFIX = struct.Struct("<I")


@dataclass(frozen=True)
class DecodedRequest:
    request: InferenceRequest
    binary: dict[str, bytes]  # input name -> its binary data (binary tensor data extension)


@dataclass(frozen=True)
class Answer:
    body: bytes
    header_length: int | None  # set when binary outputs follow the JSON


def model_metadata(runtime: ModelRuntime) -> ModelMetadataResponse:
    size, card = runtime.input_size, runtime.card
    return ModelMetadataResponse(
        name=card.name,
        versions=[card.version],
        platform=PLATFORM,
        inputs=[
            MetadataTensor(name=IMAGE_INPUT, datatype="BYTES", shape=[-1]),
            MetadataTensor(name=TENSOR_INPUT, datatype="FP32", shape=[-1, size, size, 3]),
        ],
        outputs=[
            MetadataTensor(name=PROBABILITIES_OUTPUT, datatype="FP32", shape=[-1, len(LABELS)]),
            MetadataTensor(
                name=FEATURE_MAP_OUTPUT, datatype="FP32", shape=[-1, *runtime.manifest.feature_map_shape]
            ),
        ],
    )


def check_model(runtime: ModelRuntime, name: str, version: str | None = None) -> None:
    card = runtime.card
    if name != card.name:
        raise Problem(404, f"unknown model {name!r}; this server serves {card.name!r}")
    if version is not None and version != card.version:
        raise Problem(404, f"model {name!r} has no version {version!r}; it has {card.version!r}")


def decode_request(body: bytes, header_length: str | None) -> DecodedRequest:
    """The JSON part (all the body, or its first Inference-Header-Content-Length bytes) and the
    binary data of each input that declares `binary_data_size`, in order."""
    length = len(body)
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise Problem(400, f"{HEADER_LENGTH} must be a byte count within the body ({len(body)} bytes)")
        length = int(header_length)
    try:
        request = InferenceRequest.model_validate(json.loads(body[:length]))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        if isinstance(error, ValidationError):
            errors = error.errors(include_url=False, include_input=False)
            raise Problem(400, "inference request: " + describe_validation_errors(errors)) from None
        raise Problem(400, "the inference request header is not valid JSON") from None
    binary: dict[str, bytes] = {}
    offset = length
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise Problem(400, f"input {tensor.name!r}: binary_data_size does not fit the body")
        binary[tensor.name] = body[offset : offset + size]
        offset += size
    if offset != len(body):
        raise Problem(400, f"{len(body) - offset} bytes after the inputs' binary data")
    return DecodedRequest(request, binary)


def _flat(data: list[Any]) -> list[Any]:
    """Row-major elements of a flat or nested JSON list."""
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _batch_size(tensor: RequestInput) -> int:
    count = tensor.shape[0] if tensor.shape else 0
    if not 1 <= count <= MAX_BATCH:
        raise Problem(400, f"input {tensor.name!r}: batch of {count}; send 1 to {MAX_BATCH} per request")
    return count


def read_images(tensor: RequestInput, raw: bytes | None) -> list[bytes]:
    if tensor.datatype != "BYTES":
        raise Problem(400, f"input {IMAGE_INPUT!r} must be BYTES, not {tensor.datatype}")
    if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
        raise Problem(400, f"input {IMAGE_INPUT!r} has shape {tensor.shape}; expected [N] (or [N, 1])")
    count = _batch_size(tensor)
    if raw is not None:
        images, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise Problem(400, f"input {IMAGE_INPUT!r}: truncated BYTES element length")
            (size,) = _LENGTH_PREFIX.unpack_from(raw, offset)
            if offset + 4 + size > len(raw):
                raise Problem(400, f"input {IMAGE_INPUT!r}: a BYTES element runs past the binary data")
            images.append(raw[offset + 4 : offset + 4 + size])
            offset += 4 + size
    else:
        elements = _flat(tensor.data or [])
        if not all(isinstance(element, str) for element in elements):
            raise Problem(400, f"input {IMAGE_INPUT!r}: in JSON each image is a base64 string")
        images = []
        for index, element in enumerate(elements):
            try:
                images.append(decode_base64_image(element))
            except Problem:
                raise Problem(400, f"input {IMAGE_INPUT!r}: element {index} is not valid base64") from None
    if len(images) != count:
        raise Problem(400, f"input {IMAGE_INPUT!r}: shape {tensor.shape} but {len(images)} elements")
    return images


def read_tensors(tensor: RequestInput, raw: bytes | None, size: int) -> np.ndarray:
    expected = [tensor.shape[0] if tensor.shape else 0, size, size, 3]
    if tensor.datatype != "FP32":
        raise Problem(400, f"input {TENSOR_INPUT!r} must be FP32, not {tensor.datatype}")
    if len(tensor.shape) != 4 or tensor.shape[1:] != expected[1:]:
        raise Problem(
            400, f"input {TENSOR_INPUT!r} has shape {tensor.shape}; expected [N, {size}, {size}, 3]"
        )
    count = _batch_size(tensor)
    elements = count * size * size * 3
    if raw is not None:
        if len(raw) != elements * 4:
            raise Problem(
                400,
                f"input {TENSOR_INPUT!r}: {len(raw)} bytes of binary data; "
                f"shape {tensor.shape} needs {elements * 4}",
            )
        values = np.frombuffer(raw, dtype="<f4")
    else:
        flat = _flat(tensor.data or [])
        if len(flat) != elements:
            raise Problem(400, f"input {TENSOR_INPUT!r}: shape {tensor.shape} but {len(flat)} elements")
        try:
            values = np.asarray(flat, dtype=np.float32)
        except (TypeError, ValueError):
            raise Problem(400, f"input {TENSOR_INPUT!r}: FP32 data must be numbers") from None
    if not np.all(np.isfinite(values)):
        raise Problem(400, f"input {TENSOR_INPUT!r}: NaN or infinite values")
    return values.astype(np.float32).reshape(count, size, size, 3)


def _binary(parameters: dict[str, Any] | None, default: bool) -> bool:
    value = (parameters or {}).get("binary_data", default)
    return value is True


async def infer(state: ServiceState, runtime: ModelRuntime, decoded: DecodedRequest) -> Answer:
    request = decoded.request
    if len(request.inputs) != 1:
        raise Problem(400, f"send exactly one input, {IMAGE_INPUT!r} or {TENSOR_INPUT!r}")
    (tensor,) = request.inputs
    if tensor.name not in (IMAGE_INPUT, TENSOR_INPUT):
        raise Problem(400, f"unknown input {tensor.name!r}; inputs are {IMAGE_INPUT!r} and {TENSOR_INPUT!r}")
    if tensor.name not in decoded.binary and tensor.data is None:
        raise Problem(400, f"input {tensor.name!r} has neither data nor binary_data_size")
    binary_default = (request.parameters or {}).get("binary_data_output") is True
    wanted = request.outputs or []
    for output in wanted:
        if output.name not in (PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT):
            raise Problem(
                400,
                f"unknown output {output.name!r}; "
                f"outputs are {PROBABILITIES_OUTPUT!r} and {FEATURE_MAP_OUTPUT!r}",
            )
    raw = decoded.binary.get(tensor.name)
    if tensor.name == IMAGE_INPUT:
        images = read_images(tensor, raw)
        try:
            analyses = await analyse_images(state, runtime, images)
        except ImageError as error:  # the protocol's answer to bad input is 400 (413: too many pixels)
            raise Problem(413 if isinstance(error, ImageTooLargeError) else 400, str(error)) from None
        except Problem as problem:
            if problem.status != 422:  # (not a chest X-ray, with OOD_MODE=refuse)
                raise
            raise Problem(400, problem.detail) from None
        probabilities = np.stack([analysis.probabilities for analysis in analyses])
        feature_maps = np.stack([analysis.feature_map for analysis in analyses])
    else:
        predictions = await infer_tensors(state, runtime, read_tensors(tensor, raw, runtime.input_size))
        probabilities = np.stack([prediction.probabilities for prediction in predictions])
        feature_maps = np.stack([prediction.feature_map for prediction in predictions])
    arrays = {PROBABILITIES_OUTPUT: probabilities, FEATURE_MAP_OUTPUT: feature_maps}
    requested = [(o.name, _binary(o.parameters, binary_default)) for o in wanted] or [
        (PROBABILITIES_OUTPUT, binary_default)
    ]
    return encode_answer(runtime, request.id, requested, arrays)


def encode_answer(
    runtime: ModelRuntime,
    request_id: str | None,
    requested: list[tuple[str, bool]],
    arrays: dict[str, np.ndarray],
) -> Answer:
    outputs, chunks = [], []
    for name, as_binary in requested:
        array = np.ascontiguousarray(arrays[name], dtype="<f4")  # the graph's own FP32 values
        shape = list(array.shape)
        if as_binary:
            chunk = array.tobytes()
            chunks.append(chunk)
            outputs.append(
                ResponseOutput(
                    name=name, shape=shape, datatype="FP32", parameters={"binary_data_size": len(chunk)}
                )
            )
        else:
            outputs.append(
                ResponseOutput(name=name, shape=shape, datatype="FP32", data=array.ravel().tolist())
            )
    response = InferenceResponse(
        model_name=runtime.card.name, model_version=runtime.card.version, id=request_id, outputs=outputs
    )
    header = response.model_dump_json(exclude_none=True).encode("utf-8")
    if not chunks:
        return Answer(header, None)
    return Answer(header + b"".join(chunks), len(header))
