"""The `heatmaps` parameter, heatmap_size bounds and the CAM fast path."""

import numpy as np
import pytest

from cxr.labels import LABELS
from service.api.heatmaps import (
    MIN_HEATMAP_SIZE,
    HeatmapSpec,
    HeatmapSpecError,
    cam_heatmaps,
    check_heatmap_size,
    parse_heatmap_spec,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, HeatmapSpec("none")),
        ("", HeatmapSpec("none")),
        ("none", HeatmapSpec("none")),
        ("NONE", HeatmapSpec("none")),
        ("all", HeatmapSpec("all")),
        (" All ", HeatmapSpec("all")),
        ("top:1", HeatmapSpec("top", top_k=1)),
        ("top:3", HeatmapSpec("top", top_k=3)),
        ("TOP:14", HeatmapSpec("top", top_k=14)),
        ("top: 2", HeatmapSpec("top", top_k=2)),
        ("Effusion", HeatmapSpec("labels", labels=("Effusion",))),
        ("Effusion,Atelectasis", HeatmapSpec("labels", labels=("Atelectasis", "Effusion"))),
        (" Mass , Nodule ", HeatmapSpec("labels", labels=("Mass", "Nodule"))),
        ("Mass,Mass", HeatmapSpec("labels", labels=("Mass",))),
        ("Pleural_Thickening", HeatmapSpec("labels", labels=("Pleural_Thickening",))),
        (",".join(LABELS), HeatmapSpec("labels", labels=LABELS)),
    ],
)
def test_valid_specs_parse(text: str | None, expected: HeatmapSpec) -> None:
    assert parse_heatmap_spec(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("top:0", "top:K with K from 1 to 14"),
        ("top:15", "top:K with K from 1 to 14"),
        ("top:", "top:K"),
        ("top:x", "top:K"),
        ("top:-1", "top:K"),
        ("top3", "top:K"),
        ("Efusion", "unknown label 'Efusion'"),
        ("effusion", "unknown label 'effusion'"),
        ("Mass,,Nodule", "empty label name"),
        ("Mass,", "empty label name"),
        ("No Finding", "unknown label 'No Finding'"),
        ("all,Mass", "unknown label 'all'"),
    ],
)
def test_invalid_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(HeatmapSpecError, match=message):
        parse_heatmap_spec(text)


def test_selection_order() -> None:
    probabilities = np.linspace(0.1, 0.9, len(LABELS))
    assert parse_heatmap_spec("none").select(probabilities) == []
    assert parse_heatmap_spec("all").select(probabilities) == list(LABELS)
    assert parse_heatmap_spec("top:3").select(probabilities) == list(LABELS[::-1][:3])
    assert parse_heatmap_spec("Mass,Atelectasis").select(probabilities) == ["Atelectasis", "Mass"]


def test_top_k_ties_keep_canonical_order() -> None:
    assert parse_heatmap_spec("top:2").select(np.full(len(LABELS), 0.5)) == list(LABELS[:2])


@pytest.mark.parametrize(
    ("requested", "input_size", "image_shape", "cap", "expected"),
    [
        (None, 224, (1024, 1024), 1024, 224),
        (None, 128, (1024, 1024), 1024, 128),
        (None, 224, (100, 120), 1024, 224),  # default allowed even for a small image
        (512, 224, (1024, 1024), 1024, 512),
        (1024, 224, (1024, 1024), 1024, 1024),
        (MIN_HEATMAP_SIZE, 224, (1024, 1024), 1024, MIN_HEATMAP_SIZE),
        (2000, 224, (3000, 2500), 2048, 2000),
        (None, 224, (1024, 1024), 128, 128),  # the cap wins over the default
    ],
)
def test_heatmap_size_within_bounds(
    requested: int | None, input_size: int, image_shape: tuple[int, int], cap: int, expected: int
) -> None:
    assert check_heatmap_size(requested, input_size, image_shape, cap) == expected


@pytest.mark.parametrize(
    ("requested", "image_shape", "cap"),
    [
        (1025, (1024, 1024), 1024),
        (600, (500, 400), 1024),
        (MIN_HEATMAP_SIZE - 1, (1024, 1024), 1024),
        (0, (64, 64), 512),
    ],
)
def test_heatmap_size_out_of_bounds(requested: int, image_shape: tuple[int, int], cap: int) -> None:
    with pytest.raises(HeatmapSpecError, match="heatmap_size"):
        check_heatmap_size(requested, 224, image_shape, cap)


def test_cam_heatmaps_are_normalised_maps_per_label() -> None:
    rng = np.random.default_rng(3)
    feature_map = rng.random((7, 7, 32), dtype=np.float32)
    kernel = rng.normal(size=(32, len(LABELS))).astype(np.float32)
    maps = cam_heatmaps(feature_map, kernel, ["Mass", "Effusion"])
    assert list(maps) == ["Mass", "Effusion"]
    for label, heatmap in maps.items():
        assert heatmap.shape == (7, 7)
        assert np.all(np.isfinite(heatmap)) and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
        raw = feature_map @ kernel[:, LABELS.index(label)]
        if raw.max() > 0:
            np.testing.assert_allclose(heatmap, np.maximum(raw, 0) / raw.max(), rtol=1e-5, atol=1e-6)


def test_cam_of_an_all_negative_map_is_zero_not_nan() -> None:
    feature_map = np.ones((4, 4, 8), np.float32)
    kernel = -np.ones((8, len(LABELS)), np.float32)
    heatmap = cam_heatmaps(feature_map, kernel, ["Hernia"])["Hernia"]
    assert np.all(heatmap == 0.0)
