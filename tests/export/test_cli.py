"""export.__main__: arguments, exit status and summary of `python -m export`."""

from pathlib import Path

import pytest

from cxr.model_card import load_model_card, save_model_card
from cxr.onnx_manifest import ExportManifest, Parity, Quantization, load_manifest
from export.__main__ import main, summary


def test_summary_states_parity_and_int8_numbers() -> None:
    manifest = ExportManifest(
        onnx_sha256="a" * 64,
        head_sha256="b" * 64,
        keras_sha256="c" * 64,
        input_size=224,
        feature_map_shape=(7, 7, 1024),
        opset=17,
        versions={},
        parity=Parity(
            images=["x.png"], max_abs_diff_probabilities=6e-8, max_abs_diff_feature_map=2e-6, tolerance=1e-4
        ),
        quantization=Quantization(
            file="model.int8.onnx",
            sha256="d" * 64,
            calibration_images=10,
            auroc_fp32=0.80,
            auroc_int8=0.79,
            evaluated_on="test split",
            seconds_per_image_fp32=0.2,
            seconds_per_image_int8=0.1,
        ),
    )

    text = summary(manifest, Path("build"), 61.0)

    assert "in 61 s" in text and "max |dp| 6e-08" in text
    assert "mean AUROC 0.8000 -> 0.7900" in text and "0.2000 -> 0.1000 s/image" in text


@pytest.mark.slow
def test_mismatched_weights_exit_non_zero_with_the_reason(
    model_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = load_model_card(model_copy)
    save_model_card(card.model_copy(update={"sha256": "f" * 64}), model_copy)
    out_dir = tmp_path / "build"

    status = main(["--model-dir", str(model_copy), "--out", str(out_dir)])

    assert status == 1
    assert "export failed:" in capsys.readouterr().err
    assert not out_dir.exists()


@pytest.mark.slow
def test_record_in_card_copies_the_manifest_into_the_model_card(model_copy: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "build"

    assert main(["--model-dir", str(model_copy), "--out", str(out_dir), "--record-in-card"]) == 0

    recorded = load_model_card(model_copy).export
    assert recorded is not None
    assert recorded == load_manifest(out_dir)
    assert recorded.keras_sha256 == load_model_card(model_copy).sha256
