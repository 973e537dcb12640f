"""The model card: the metadata that travels with the weights and that every process checks."""

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cxr.labels import LABELS
from cxr.onnx_manifest import ExportManifest

MODEL_CARD_FILE = "model_card.json"


class Normalisation(BaseModel):
    """Greyscale [0, 1] pixels are standardised as (x - mean) / std before the network."""

    mean: float = Field(examples=[0.498])
    std: float = Field(gt=0, examples=[0.249])


class LabelMetrics(BaseModel):
    auroc: float | None = Field(description="Area under the ROC curve; null when a class is absent.")
    ci_low: float | None = Field(default=None, description="2.5th percentile of the bootstrap AUROC.")
    ci_high: float | None = Field(default=None, description="97.5th percentile of the bootstrap AUROC.")
    n_positive: int
    n_negative: int


class SplitMetrics(BaseModel):
    split: str
    n_images: int
    mean_auroc: float | None
    mean_auroc_ci_low: float | None = None
    mean_auroc_ci_high: float | None = None
    per_label: dict[str, LabelMetrics]


class TrainingData(BaseModel):
    dataset: str = Field(examples=["NIH ChestX-ray14 (388-image sample)"])
    split_rule: str = Field(examples=["patient-level, label-stratified, seed 7: 60/20/20"])
    n_train: int
    n_validation: int
    n_test: int
    seed: int
    recipe: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Training options (epochs, image size, teacher, ...)."
    )


class ModelCard(BaseModel):
    """What a served model is, how to feed it and how well it did."""

    model_config = ConfigDict(protected_namespaces=())

    name: str = Field(examples=["chexnet-densenet121"])
    version: str = Field(examples=["1.0.0"])
    created: str = Field(description="ISO date of training.", examples=["2026-11-23"])
    architecture: str = Field(default="DenseNet121 + GlobalAveragePooling2D + Dense(14, sigmoid)")
    labels: list[str] = Field(description="Output order of the network.", examples=[list(LABELS)])
    input_size: int = Field(gt=0, description="Square input side in pixels.", examples=[128])
    normalisation: Normalisation
    thresholds: dict[str, float] = Field(description="Operating threshold per label: finding if p >= it.")
    threshold_rule: str = Field(examples=["Youden's J on the validation split"])
    last_conv_layer: str = Field(
        description="Layer whose output is the final feature map used by Grad-CAM.", examples=["relu"]
    )
    weights_file: str = Field(examples=["model.keras"])
    sha256: str = Field(description="sha256 of the weights file.", min_length=64, max_length=64)
    training: TrainingData
    metrics: list[SplitMetrics] = Field(default_factory=list)
    export: ExportManifest | None = Field(
        default=None,
        description="The shipped export's manifest (`make export-int8`): both ONNX files' sha256, "
        "the parity figures and the int8 AUROC on the test split. A record: the API checks build/'s.",
    )

    @field_validator("labels")
    @classmethod
    def _canonical_labels(cls, labels: list[str]) -> list[str]:
        if tuple(labels) != LABELS:
            raise ValueError(f"labels must be the 14 canonical labels in order: {', '.join(LABELS)}")
        return labels

    @model_validator(mode="after")
    def _threshold_per_label(self) -> "ModelCard":
        if set(self.thresholds) != set(self.labels):
            raise ValueError("thresholds must name every label exactly once")
        for label, value in self.thresholds.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"threshold of {label} is {value}, outside [0, 1]")
        return self

    def metrics_for(self, split: str) -> SplitMetrics | None:
        return next((entry for entry in self.metrics if entry.split == split), None)


class ModelCardMismatchError(RuntimeError):
    """The weights on disk are not the ones the card describes."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model_card(model_dir: str | Path) -> ModelCard:
    path = Path(model_dir) / MODEL_CARD_FILE
    return ModelCard.model_validate_json(path.read_text())


def save_model_card(card: ModelCard, model_dir: str | Path) -> Path:
    path = Path(model_dir) / MODEL_CARD_FILE
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return path


def verify_weights(card: ModelCard, model_dir: str | Path) -> Path:
    """Path of the card's weights file after checking its sha256."""
    weights = Path(model_dir) / card.weights_file
    if not weights.is_file():
        raise FileNotFoundError(f"weights file {weights} named by the model card is missing")
    actual = sha256_file(weights)
    if actual != card.sha256:
        raise ModelCardMismatchError(f"{weights} has sha256 {actual}, the model card says {card.sha256}")
    return weights
