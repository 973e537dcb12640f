"""A uniform soup: the mean of its ingredients' weights, judged and thresholded on validation only."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr.model_card import load_model_card, save_model_card, sha256_file, verify_weights
from training.model import HEAD_LAYER
from training.soup import SoupError, average_weights, main, make_soup


def test_weights_are_averaged_tensor_by_tensor() -> None:
    first = [np.array([1.0, 2.0], dtype=np.float32), np.array([[0.0]], dtype=np.float32)]
    second = [np.array([3.0, 6.0], dtype=np.float32), np.array([[1.0]], dtype=np.float32)]
    mean = average_weights([first, second])
    np.testing.assert_array_equal(mean[0], [2.0, 4.0])
    np.testing.assert_array_equal(mean[1], [[0.5]])
    assert all(tensor.dtype == np.float32 for tensor in mean)
    with pytest.raises(SoupError, match="differ in number or shape"):
        average_weights([first, [first[0], np.zeros((2, 1), np.float32)]])
    with pytest.raises(SoupError, match="no ingredients"):
        average_weights([])


def _shifted_copy(model_dir: Path, out: Path, shift: float) -> Path:
    """A copy of a model folder whose head bias is moved by `shift` (card sha256 updated)."""
    import keras

    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("checkpoints"))
    card = load_model_card(out)
    model = keras.models.load_model(out / card.weights_file, compile=False)
    kernel, bias = model.get_layer(HEAD_LAYER).get_weights()
    model.get_layer(HEAD_LAYER).set_weights([kernel, bias + shift])
    model.save(out / card.weights_file)
    save_model_card(card.model_copy(update={"sha256": sha256_file(out / card.weights_file)}), out)
    return out


@pytest.mark.slow
def test_a_soup_is_the_mean_model_scored_on_validation_only(
    smoke_model: Path, nih_data: Path, tmp_path: Path
) -> None:
    import keras

    shifted = _shifted_copy(smoke_model, tmp_path / "shifted", 1.0)
    out = tmp_path / "soup"
    report = make_soup([smoke_model, shifted], out, [str(nih_data)], "9.9.9")

    card = load_model_card(out)
    soup = keras.models.load_model(verify_weights(card, out), compile=False)
    original = keras.models.load_model(smoke_model / "model.keras", compile=False)
    np.testing.assert_allclose(
        soup.get_layer(HEAD_LAYER).get_weights()[1],
        original.get_layer(HEAD_LAYER).get_weights()[1] + 0.5,
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        soup.get_layer("conv1_conv").get_weights()[0], original.get_layer("conv1_conv").get_weights()[0]
    )
    assert card.version == "9.9.9" and "soup_of" in card.training.recipe
    assert [entry.split for entry in card.metrics] == ["validation"]  # the test split is not scored
    assert (out / "splits.csv").read_text() == (smoke_model / "splits.csv").read_text()
    scores = report["validation_mean_auroc"]
    assert isinstance(scores, dict) and set(scores) == {str(smoke_model), str(shifted), str(out)}
    assert json.loads((out / "soup.json").read_text()) == report
    # A shared shift of every logit leaves each label's ranking, hence the AUROC, unchanged.
    assert scores[str(out)] == pytest.approx(scores[str(smoke_model)], abs=1e-6)


@pytest.mark.slow
def test_ingredients_of_different_splits_or_sizes_are_refused(
    smoke_model: Path, nih_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    shutil.copytree(smoke_model, other, ignore=shutil.ignore_patterns("checkpoints"))
    lines = (other / "splits.csv").read_text().splitlines()
    (other / "splits.csv").write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    args = ["--model-dir", str(smoke_model), "--model-dir", str(other), "--dataset", str(nih_data)]
    assert main([*args, "--out", str(tmp_path / "soup"), "--version", "9.9.9"]) == 2
    assert "not one split" in capsys.readouterr().err

    card = load_model_card(other)
    save_model_card(card.model_copy(update={"input_size": card.input_size * 2}), other)
    with pytest.raises(SoupError, match="not one model's input"):
        make_soup([smoke_model, other], tmp_path / "soup", [str(nih_data)], "9.9.9")
    with pytest.raises(SoupError, match="at least two"):
        make_soup([smoke_model, smoke_model], tmp_path / "soup", [str(nih_data)], "9.9.9")
    with pytest.raises(SoupError, match="is an ingredient"):
        make_soup([smoke_model, other], other, [str(nih_data)], "9.9.9")
    assert not (tmp_path / "soup").exists()
