"""Which heatmaps a client asked for, and the CAM fast path (maths only: arrays in, arrays out).

The `heatmaps` parameter is one of
    none            no heatmaps (the default)
    all             every label
    top:K           the K most probable labels, 1 <= K <= 14
    A,B,...         these labels (canonical names, e.g. Effusion,Pleural_Thickening)
Colouring and PNG encoding live in `rendering`.
"""

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from cxr.cam import class_activation_maps, normalise_heatmap
from cxr.labels import LABELS, UnknownLabelError, label_index, validate_labels

MIN_HEATMAP_SIZE = 16
_TOP = re.compile(r"^top:(\d{1,3})$", re.IGNORECASE)


class HeatmapStyle(StrEnum):
    OVERLAY = "overlay"
    MASK = "mask"


class HeatmapSpecError(ValueError):
    """The `heatmaps` or `heatmap_size` parameter is not valid (-> 422)."""


@dataclass(frozen=True)
class HeatmapSpec:
    mode: str  # "none", "all", "top" or "labels"
    top_k: int = 0
    labels: tuple[str, ...] = ()

    @property
    def wanted(self) -> bool:
        return self.mode != "none"

    def select(self, probabilities: np.ndarray) -> list[str]:
        """The labels to explain: canonical order, or by falling probability for top:K."""
        if self.mode == "all":
            return list(LABELS)
        if self.mode == "labels":
            return list(self.labels)
        if self.mode == "top":
            order = sorted(range(len(LABELS)), key=lambda index: (-float(probabilities[index]), index))
            return [LABELS[index] for index in order[: self.top_k]]
        return []


NO_HEATMAPS = HeatmapSpec("none")


def parse_heatmap_spec(text: str | None) -> HeatmapSpec:
    """Parse the `heatmaps` parameter; HeatmapSpecError says what is wrong and what is accepted."""
    if text is None:
        return NO_HEATMAPS
    value = text.strip()
    if value.lower() in ("", "none"):
        return NO_HEATMAPS
    if value.lower() == "all":
        return HeatmapSpec("all")
    if value.lower().startswith("top"):
        match = _TOP.match(value.replace(" ", ""))
        if not match or not 1 <= int(match.group(1)) <= len(LABELS):
            raise HeatmapSpecError(
                f"heatmaps={text!r}: write top:K with K from 1 to {len(LABELS)}, e.g. top:3"
            )
        return HeatmapSpec("top", top_k=int(match.group(1)))
    names = [name.strip() for name in value.split(",")]
    if any(not name for name in names):
        raise HeatmapSpecError(f"heatmaps={text!r}: empty label name in the comma-separated list")
    try:
        labels = validate_labels(names)
    except UnknownLabelError as error:
        raise HeatmapSpecError(
            f"heatmaps: unknown label {error.name!r}; use none, all, top:K or a comma-separated list of: "
            + ", ".join(LABELS)
        ) from None
    return HeatmapSpec("labels", labels=tuple(labels))


def heatmap_size_limit(input_size: int, image_shape: tuple[int, int], cap: int) -> int:
    """Largest heatmap side for this image: its own size (at least the model's input), capped."""
    return min(cap, max(input_size, max(image_shape)))


def check_heatmap_size(requested: int | None, input_size: int, image_shape: tuple[int, int], cap: int) -> int:
    """The heatmap side to render: default the model's input size, within [16, limit]."""
    limit = heatmap_size_limit(input_size, image_shape, cap)
    if requested is None:
        return min(input_size, limit)
    if not MIN_HEATMAP_SIZE <= requested <= limit:
        raise HeatmapSpecError(
            f"heatmap_size={requested}: must be from {MIN_HEATMAP_SIZE} to {limit} for this "
            f"{image_shape[1]}x{image_shape[0]} image (at most the image's size, capped at {cap})"
        )
    return requested


def cam_heatmaps(feature_map: np.ndarray, kernel: np.ndarray, labels: list[str]) -> dict[str, np.ndarray]:
    """Label -> (h, w) class activation map in [0, 1] from the ONNX feature map and the Dense head."""
    indices = [label_index(label) for label in labels]
    maps = normalise_heatmap(class_activation_maps(feature_map, kernel, indices))
    return {label: maps[position] for position, label in enumerate(labels)}
