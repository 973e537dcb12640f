"""Request and response bodies of the public API (what /openapi.json documents)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cxr.labels import LABELS

_EXAMPLE_PROBABILITIES: dict[str, Any] = dict(
    zip(
        LABELS,
        (0.62, 0.08, 0.11, 0.04, 0.71, 0.02, 0.03, 0.01, 0.35, 0.06, 0.09, 0.05, 0.03, 0.02),
        strict=True,
    )
)
_EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAIAAAACACAMAAAD04JH5AAAA..."


class Finding(BaseModel):
    label: str = Field(description="One of the 14 canonical labels.", examples=["Effusion"])
    probability: float = Field(
        ge=0, le=1, description="The model's probability for the label.", examples=[0.71]
    )
    threshold: float = Field(
        ge=0, le=1, description="The label's operating threshold from the model card.", examples=[0.49]
    )


class ModelInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(examples=["chexnet-densenet121"])
    version: str = Field(examples=["1.0.0"])
    sha256: str = Field(description="sha256 of the trained weights (as in the model card).")
    precision: Literal["fp32", "int8"] = Field(
        description="The ONNX graph that computed the probabilities: int8 (quantised from the weights "
        "above) or fp32 (MODEL_PRECISION); Grad-CAM heatmaps are fp32 either way."
    )


class PredictResponse(BaseModel):
    probabilities: dict[str, float] = Field(
        description="Every one of the 14 labels, in canonical order, -> probability in [0, 1].",
        examples=[_EXAMPLE_PROBABILITIES],
    )
    findings: list[Finding] = Field(
        description="Labels whose probability is at or over their threshold, most probable first."
    )
    heatmaps: dict[str, str] = Field(
        description="Label -> base64 PNG (heatmap_size x heatmap_size); empty when none were asked for "
        "or none could be made (then `warnings` says why).",
        examples=[{"Effusion": _EXAMPLE_PNG}],
    )
    heatmap_engine: Literal["tensorflow", "cam"] | None = Field(
        default=None,
        description="'tensorflow': Grad-CAM by the sidecar; 'cam': class activation maps computed here "
        "(the fast path when the sidecar is unavailable); null when there are no heatmaps.",
        examples=["tensorflow"],
    )
    model: ModelInfo
    request_id: str = Field(description="Also in the X-Request-ID header; quote it when reporting a problem.")
    warnings: list[str] = Field(
        default_factory=list,
        description="Human-readable notes: heatmaps unavailable or made by the fast path, image not "
        "looking like a frontal chest X-ray, ...",
        examples=[["heatmaps: the Grad-CAM sidecar timed out; class activation maps were computed instead"]],
    )

    model_config = ConfigDict(
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "probabilities": _EXAMPLE_PROBABILITIES,
                    "findings": [
                        {"label": "Effusion", "probability": 0.71, "threshold": 0.49},
                        {"label": "Atelectasis", "probability": 0.62, "threshold": 0.5},
                    ],
                    "heatmaps": {"Effusion": _EXAMPLE_PNG},
                    "heatmap_engine": "tensorflow",
                    "model": {"name": "chexnet-densenet121", "version": "1.0.0", "sha256": "a636...c168"},
                    "request_id": "0f8c2b6e9d5a4f1e8b7c6d5e4f3a2b1c",
                    "warnings": [],
                }
            ]
        },
    )


class PredictJSONRequest(BaseModel):
    """The JSON form of a prediction request, for systems that cannot send multipart."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"image_base64": "iVBORw0KGgoAAAANSUhEUgAABAAAAAQACAAAAAB...", "heatmaps": "top:3"}]
        },
    )

    image_base64: str = Field(
        description="The PNG, JPEG or DICOM file, base64 (a data: URL prefix is accepted).", min_length=1
    )
    heatmaps: str | None = Field(
        default=None, description="As the `heatmaps` query parameter.", examples=["top:3"]
    )
    heatmap_style: Literal["overlay", "mask"] | None = Field(
        default=None, description="As the query parameter."
    )
    heatmap_size: int | None = Field(default=None, description="As the query parameter.", examples=[512])


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str = Field(examples=["urn:cxr:problem:unsupported-image"])
    title: str = Field(examples=["Not a supported image"])
    status: int = Field(examples=[415])
    detail: str = Field(examples=["the content is not a PNG, JPEG or DICOM (Part 10) file"])
    request_id: str | None = Field(examples=["0f8c2b6e9d5a4f1e8b7c6d5e4f3a2b1c"])


class ModelReadiness(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    state: Literal["loading", "ready", "failed"]
    name: str | None = None
    version: str | None = None
    sha256: str | None = None
    precision: Literal["fp32", "int8"] | None = None
    error: str | None = Field(default=None, description="Why loading failed (the process then exits).")


class SidecarReadiness(BaseModel):
    url: str
    reachable: bool
    ready: bool
    same_model: bool | None = Field(
        description="Whether the sidecar serves the same weights (null if unknown)."
    )
    circuit: Literal["closed", "open", "half_open"]
    detail: str
    instance_id: str | None = Field(
        default=None, description="The sidecar process last seen (new with each restart); null before."
    )
    started_at: float | None = Field(
        default=None, description="When that sidecar process started (Unix seconds)."
    )
    restarts_seen: int = Field(
        default=0,
        description="Sidecar restarts this API noticed (instance_id changed); also "
        "cxr_sidecar_restarts_total in /metrics.",
    )


class Readiness(BaseModel):
    ready: bool = Field(description="True when predictions are served (even without the sidecar).")
    state: Literal["loading", "ready", "degraded", "failed"] = Field(
        description="'degraded': the model is served but Grad-CAM heatmaps fall back (sidecar unusable)."
    )
    model: ModelReadiness
    sidecar: SidecarReadiness | None = Field(
        description="Null while the model loads (the sidecar client starts with it)."
    )
