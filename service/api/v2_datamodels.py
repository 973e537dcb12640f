"""The Open Inference Protocol's REST JSON (KServe v2 / Triton HTTP), as pydantic models.

Field for field the spec's $metadata_server_response, $metadata_model_response, $inference_request,
$inference_response and their tensors (https://kserve.github.io/website/docs/concepts/architecture/
data-plane/v2-protocol). `parameters` carries the binary tensor data extension's
`binary_data_size` (inputs, outputs), `binary_data` (requested outputs) and `binary_data_output`
(the request).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
Parameters = dict[str, str | int | float | bool]


class ServerLiveResponse(BaseModel):
    live: bool


class ServerReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="-1 for a dimension of any size (the batch).")


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(max_length=8)
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = Field(
        default=None, description="Row-major, flat or nested; absent when sent as binary data."
    )


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ErrorResponse(BaseModel):
    error: str = Field(examples=["unknown model 'resnet50'; this server serves 'chexnet-densenet121'"])
