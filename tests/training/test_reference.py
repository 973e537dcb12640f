"""The reference comparison: both models on the common images, the published column."""

from pathlib import Path

import numpy as np
import pytest

from cxr.labels import LABELS
from training.data import LabelTableError
from training.reference import NoCommonImagesError, compare_with_reference, read_published_aurocs


def test_comparison_scores_both_models_on_the_common_images_only() -> None:
    rng = np.random.default_rng(0)
    images = [f"{i}.png" for i in range(40)]
    labels = (rng.random((40, 14)) < 0.4).astype(np.float32)
    ours = rng.random((40, 14))
    reference = {image: labels[i] * 0.8 + 0.1 for i, image in enumerate(images) if i % 10}  # 4 missing
    comparison = compare_with_reference("test", images, labels, ours, reference, {"Mass": 0.84}, 20)
    assert comparison.n_split == 40 and comparison.n_common == 36
    assert comparison.missing == ["0.png", "10.png", "20.png", "30.png"]
    assert comparison.reference.mean_auroc == pytest.approx(1.0)  # perfect on the images it scored
    common = [i for i in range(40) if i % 10]
    expected = comparison.ours.per_label[LABELS[0]].auroc
    from training.metrics import auroc

    assert expected == pytest.approx(auroc(labels[common, 0], ours[common, 0]))
    assert comparison.published == {"Mass": 0.84}


def test_no_common_image_is_an_error() -> None:
    with pytest.raises(NoCommonImagesError, match="no prediction for any of the 1 test images"):
        compare_with_reference("test", ["a.png"], np.zeros((1, 14)), np.zeros((1, 14)), {}, {}, 0)


def test_published_aurocs_are_read_by_label(tmp_path: Path) -> None:
    path = tmp_path / "aucs.csv"
    path.write_text("label,auc\nMass,0.83\nHernia,0.91\n")
    assert read_published_aurocs(path) == {"Mass": 0.83, "Hernia": 0.91}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,value\nMass,0.8\n", "expected the columns label,auc"),
        ("label,auc\nFlying_Saucer,0.8\n", "row 2: unknown or repeated label 'Flying_Saucer'"),
        ("label,auc\nMass,0.8\nMass,0.7\n", "row 3: unknown or repeated label 'Mass'"),
        ("label,auc\nMass,high\n", "row 2: auc 'high' is not a number"),
    ],
)
def test_bad_published_tables_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "aucs.csv"
    path.write_text(text)
    with pytest.raises(LabelTableError, match=message):
        read_published_aurocs(path)


def test_the_shipped_reference_tables_cover_every_label(nih_data: Path) -> None:
    from training.data import read_teacher

    published = read_published_aurocs(nih_data / "reference" / "reproduce_chexnet_aucs.csv")
    assert set(published) == set(LABELS)
    assert np.mean(list(published.values())) == pytest.approx(0.838, abs=0.001)
    assert len(read_teacher(nih_data / "reference" / "reproduce_chexnet_preds_for_images.csv")) == 379
