"""export.pipeline: the manifest, atomic publication, and refusals that leave nothing behind."""

import shutil
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from cxr.model_card import ModelCardMismatchError, load_model_card, save_model_card, sha256_file
from cxr.onnx_manifest import HEAD_FILE, INT8_ONNX_FILE, MANIFEST_FILE, ONNX_FILE, load_manifest
from export.convert import DEFAULT_OPSET
from export.parity import ParityError
from export.pipeline import VERSIONED_PACKAGES, ExportOptions, export_model, publish


@pytest.mark.slow
def test_manifest_describes_the_published_files(
    exported: Path, tiny_model_dir: Path, fixture_images: list[Path]
) -> None:
    manifest = load_manifest(exported)
    card = load_model_card(tiny_model_dir)

    assert sorted(path.name for path in exported.iterdir()) == sorted([HEAD_FILE, MANIFEST_FILE, ONNX_FILE])
    assert manifest.onnx_sha256 == sha256_file(exported / ONNX_FILE)
    assert manifest.head_sha256 == sha256_file(exported / HEAD_FILE)
    assert manifest.keras_sha256 == card.sha256 == sha256_file(tiny_model_dir / "model.keras")
    assert manifest.input_size == card.input_size
    assert manifest.feature_map_shape == (2, 2, 1024)
    assert manifest.opset == DEFAULT_OPSET == onnx.load(exported / ONNX_FILE).opset_import[0].version
    assert set(manifest.versions) == set(VERSIONED_PACKAGES)
    assert manifest.parity.images == [path.name for path in fixture_images]
    assert manifest.parity.tolerance == 1e-4
    assert 0.0 <= manifest.parity.max_abs_diff_probabilities <= 1e-4
    assert np.isfinite(manifest.parity.max_abs_diff_feature_map)
    assert manifest.quantization is None


@pytest.mark.slow
def test_export_refuses_weights_that_do_not_match_the_card(model_copy: Path, tmp_path: Path) -> None:
    card = load_model_card(model_copy)
    save_model_card(card.model_copy(update={"sha256": "0" * 64}), model_copy)
    out_dir = tmp_path / "build"

    with pytest.raises(ModelCardMismatchError, match="the model card says 0000"):
        export_model(model_copy, out_dir, ExportOptions())

    assert not out_dir.exists()


@pytest.mark.slow
def test_failed_parity_publishes_nothing_and_keeps_the_previous_build(
    exported: Path,
    tiny_model_dir: Path,
    shifted_head: keras.Model,
    fixture_images: list[Path],
    tmp_path: Path,
) -> None:
    """Keras is given a shifted head bias, so its probabilities no longer match the ONNX graph's."""
    previous = Path(shutil.copytree(exported, tmp_path / "build"))
    before = {path.name: path.read_bytes() for path in previous.iterdir()}
    proto = onnx.load(exported / ONNX_FILE)
    card = load_model_card(tiny_model_dir)

    with pytest.raises(ParityError, match=r"differ by up to .* \(tolerance 0\.0001\)"):
        options = ExportOptions(parity_images=fixture_images)
        publish(previous, proto, shifted_head, card, tiny_model_dir, options)

    assert {path.name: path.read_bytes() for path in previous.iterdir()} == before


@pytest.mark.slow
def test_failed_parity_leaves_no_onnx_file_in_a_new_folder(
    exported: Path,
    tiny_model_dir: Path,
    shifted_head: keras.Model,
    fixture_images: list[Path],
    tmp_path: Path,
) -> None:
    out_dir = tmp_path / "build"

    with pytest.raises(ParityError):
        publish(
            out_dir,
            onnx.load(exported / ONNX_FILE),
            shifted_head,
            load_model_card(tiny_model_dir),
            tiny_model_dir,
            ExportOptions(parity_images=fixture_images),
        )

    assert list(out_dir.iterdir()) == []


@pytest.mark.slow
def test_publish_without_int8_removes_a_stale_int8_file(
    exported: Path, tiny_model_dir: Path, two_outputs: keras.Model, fixture_images: list[Path], tmp_path: Path
) -> None:
    out_dir = Path(shutil.copytree(exported, tmp_path / "build"))
    (out_dir / INT8_ONNX_FILE).write_bytes(b"from an earlier export")

    publish(
        out_dir,
        onnx.load(exported / ONNX_FILE),
        two_outputs,
        load_model_card(tiny_model_dir),
        tiny_model_dir,
        ExportOptions(parity_images=fixture_images),
    )

    assert not (out_dir / INT8_ONNX_FILE).exists()
    assert load_manifest(out_dir).onnx_sha256 == sha256_file(out_dir / ONNX_FILE)
