"""export.parity: the check itself, and an independent Keras vs onnxruntime comparison on real images."""

import math
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import pytest

from cxr.onnx_manifest import INPUT_NAME, ONNX_FILE, Parity
from export.parity import (
    FEATURE_MAP_TOLERANCE,
    ParityError,
    check_parity,
    default_parity_images,
    load_inputs,
    open_session,
    run_keras,
    run_onnx,
)
from training.model import LAST_CONV_LAYER


def parity(diff: float, tolerance: float, feature_map_diff: float = 0.0) -> Parity:
    return Parity(
        images=["a.png"],
        max_abs_diff_probabilities=diff,
        max_abs_diff_feature_map=feature_map_diff,
        tolerance=tolerance,
    )


@pytest.mark.parametrize(
    ("diff", "tolerance"),
    [(0.0, 0.0), (5e-5, 1e-4), (1e-4, 1e-4)],
)
def test_check_parity_accepts_differences_within_tolerance(diff: float, tolerance: float) -> None:
    check_parity(parity(diff, tolerance))


@pytest.mark.parametrize(
    ("diff", "tolerance"),
    [(2e-4, 1e-4), (6e-8, 0.0), (math.nan, 1e-4), (math.inf, 1e-4)],
)
def test_check_parity_refuses_larger_or_non_finite_differences(diff: float, tolerance: float) -> None:
    with pytest.raises(ParityError, match="not published"):
        check_parity(parity(diff, tolerance))


@pytest.mark.parametrize("feature_map_diff", [2 * FEATURE_MAP_TOLERANCE, math.nan, math.inf])
def test_check_parity_refuses_feature_maps_that_differ(feature_map_diff: float) -> None:
    check_parity(parity(0.0, 1e-4, FEATURE_MAP_TOLERANCE))
    with pytest.raises(ParityError, match="feature maps differ"):
        check_parity(parity(0.0, 1e-4, feature_map_diff))


def test_default_parity_images_are_the_committed_fixtures(fixture_images: list[Path]) -> None:
    assert default_parity_images() == fixture_images
    assert len(fixture_images) >= 4


def test_load_inputs_refuses_an_empty_image_list(tmp_path: Path) -> None:
    with pytest.raises(ParityError, match="no parity images"):
        load_inputs([], card=None)  # type: ignore[arg-type]  # refused before the card is read


@pytest.mark.slow
def test_onnx_matches_keras_on_real_images(
    exported: Path, tiny_model: keras.Model, fixture_inputs: np.ndarray
) -> None:
    """Recomputed here from the saved model and ONNX file, independently of the export's own check."""
    model = tiny_model
    features = keras.Model(model.input, model.get_layer(LAST_CONV_LAYER).output)
    session = ort.InferenceSession(str(exported / ONNX_FILE), providers=["CPUExecutionProvider"])

    probabilities, feature_map = session.run(None, {INPUT_NAME: fixture_inputs})

    keras_probabilities = np.asarray(model(fixture_inputs, training=False))
    keras_feature_map = np.asarray(features(fixture_inputs, training=False))
    assert np.max(np.abs(probabilities - keras_probabilities)) <= 1e-4
    np.testing.assert_allclose(feature_map, keras_feature_map, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_the_shipped_export_matches_its_keras_weights(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path]
) -> None:
    """The weights the service runs: both outputs of onnxruntime against Keras on the fixture films,
    and the parity the export's manifest claims (which the service's start-up trusts) holds."""
    from cxr.model_card import load_model_card
    from cxr.onnx_manifest import load_manifest
    from export.convert import build_export_model, load_keras_model

    card = load_model_card(model_dir)
    manifest = load_manifest(onnx_dir)
    assert manifest.keras_sha256 == card.sha256
    inputs = load_inputs(fixture_images, card)
    keras_probabilities, keras_feature_map = run_keras(
        build_export_model(load_keras_model(card, model_dir), card.last_conv_layer), inputs
    )
    probabilities, feature_map = run_onnx(open_session(onnx_dir / manifest.onnx_file), inputs)

    np.testing.assert_allclose(probabilities, keras_probabilities, rtol=0, atol=manifest.parity.tolerance)
    np.testing.assert_allclose(feature_map, keras_feature_map, rtol=0, atol=FEATURE_MAP_TOLERANCE)
    assert np.abs(keras_feature_map).max() > 0.1  # a live feature map, not all zeros
    check_parity(manifest.parity)  # the manifest's own figures are within both tolerances


def test_the_shipped_card_records_its_export_and_int8_change(model_dir: Path) -> None:
    """`make export-int8` copies its manifest into the card: both files' sha256 and the int8 AUROC
    on the test split, whose fp32 figure must be the card's own test AUROC (Keras, same films)."""
    from cxr.model_card import load_model_card

    card = load_model_card(model_dir)
    if card.export is None:
        if Path(__file__).resolve().parents[2] / "models" in model_dir.resolve().parents:
            pytest.fail(f"{model_dir}'s card has no export record: make export-int8 writes it")
        pytest.skip(f"{model_dir} has no export record (not a shipped model)")
    assert card.export.keras_sha256 == card.sha256, "the export record is for other weights"
    quantization = card.export.quantization
    assert quantization is not None and quantization.auroc_fp32 is not None
    assert quantization.auroc_int8 is not None and len(quantization.sha256) == 64
    test = card.metrics_for("test")
    assert test is not None and test.mean_auroc is not None
    assert quantization.auroc_fp32 == pytest.approx(test.mean_auroc, abs=1e-3)
