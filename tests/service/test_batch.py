"""`python -m service.batch`: real NIH radiographs (PNG, and the same pixels as JPEG and DICOM), a
corrupt file, a CSV input, resuming an interrupted run, and a foreign output file."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from dicom_factory import make_dicom
from PIL import Image

from cxr.labels import LABELS
from cxr.model_card import load_model_card
from cxr.onnx_manifest import load_manifest
from cxr.preprocessing import preprocess_bytes
from service import batch


def _dicom_bytes(png: Path) -> bytes:
    """The PNG's 8-bit pixels as an uncompressed 16-bit MONOCHROME2 DICOM file."""
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.uint16) * 257  # 8 -> 16 bits, same image
    return make_dicom(pixels, bits_stored=16)


@pytest.fixture()
def image_folder(tmp_path: Path, fixture_images: list[Path]) -> Path:
    """The four NIH fixtures, one as JPEG and one as an extension-less DICOM in a sub-folder, a
    truncated PNG, an empty file and a text file that is not an image."""
    folder = tmp_path / "images"
    (folder / "dicom").mkdir(parents=True)
    for image in fixture_images:
        shutil.copy(image, folder / image.name)
    Image.open(fixture_images[0]).convert("L").save(folder / "as_jpeg.jpg", quality=95)
    (folder / "dicom" / "study1").write_bytes(_dicom_bytes(fixture_images[1]))
    (folder / "truncated.png").write_bytes(fixture_images[2].read_bytes()[:4000])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image\n")
    return folder


def _run(*args: object) -> int:
    return batch.main([str(arg) for arg in args] + ["--no-progress"])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _reference(model_dir: Path, onnx_dir: Path, files: list[Path], precision: str = "fp32") -> np.ndarray:
    """Bare onnxruntime (the export's file of that precision) on cxr.preprocessing, one image at a time."""
    card = load_model_card(model_dir)
    manifest = load_manifest(onnx_dir)
    name = manifest.onnx_file
    if precision == "int8":
        assert manifest.quantization is not None
        name = manifest.quantization.file
    session = ort.InferenceSession(str(onnx_dir / name), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = []
    for file in files:
        tensor = preprocess_bytes(
            file.read_bytes(), card.input_size, card.normalisation.mean, card.normalisation.std
        )
        out.append(session.run(["probabilities"], {name: tensor[np.newaxis]})[0][0])
    return np.array(out)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_folder_scores_every_readable_image_and_reports_the_rest(
    image_folder: Path, tmp_path: Path, model_dir: Path, onnx_dir: Path, precision: str
) -> None:
    if precision == "int8" and load_manifest(onnx_dir).quantization is None:
        pytest.skip("this export has no int8 model")
    out = tmp_path / "scores.csv"
    arguments = ["--out", out, "--model-dir", model_dir, "--onnx-dir", onnx_dir, "--batch-size", 4]
    assert _run(image_folder, *arguments, "--precision", precision) == 0

    rows = _rows(out)
    keys = [row["path"] for row in rows]
    assert sorted(keys) == sorted(
        [
            "00000001_000.png",
            "00000002_000.png",
            "00000404_000.png",
            "00004001_000.png",
            "as_jpeg.jpg",
            "dicom/study1",
        ]
    )
    assert list(rows[0]) == ["path", *LABELS, "findings", "model_sha256"]
    scores = {row["path"]: np.array([float(row[label]) for label in LABELS]) for row in rows}
    for probabilities in scores.values():
        assert np.all((probabilities >= 0) & (probabilities <= 1))

    # Same numbers as bare onnxruntime on the shared preprocessing (batching changes nothing).
    pngs = sorted(image_folder.glob("0*.png"))
    expected = _reference(model_dir, onnx_dir, pngs, precision)
    actual = np.array([scores[png.name] for png in pngs])
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    # The JPEG and DICOM copies decode to (nearly) the same image, so (nearly) the same scores.
    np.testing.assert_allclose(scores["dicom/study1"], scores["00000002_000.png"], atol=1e-3)
    np.testing.assert_allclose(scores["as_jpeg.jpg"], scores["00000001_000.png"], atol=0.05)

    card = load_model_card(model_dir)
    for row in rows:
        # The CSV holds 6 decimals: a label within rounding of its threshold may go either way (a
        # validation image scores exactly its label's Youden threshold).
        written = set(row["findings"].split(";")) - {""}
        for label in LABELS:
            margin = float(row[label]) - card.thresholds[label]
            if abs(margin) > 1e-6:
                assert (label in written) == (margin > 0), (row["path"], label)

    errors = {row["path"]: row for row in _rows(tmp_path / "scores.errors.csv")}
    assert set(errors) == {"truncated.png", "empty.png"}
    assert errors["truncated.png"]["error"] == "CorruptImageError"
    assert errors["empty.png"]["error"] == "UnsupportedImageError"
    assert "notes.txt" not in keys  # not an image file name: not even tried


def test_resume_skips_files_already_scored_and_retries_failures(
    image_folder: Path, tmp_path: Path, model_dir: Path, onnx_dir: Path
) -> None:
    out = tmp_path / "scores.csv"
    common = ("--out", out, "--model-dir", model_dir, "--onnx-dir", onnx_dir)
    assert _run(image_folder, *common) == 0
    first = out.read_text()

    # An interrupted run: only the first three rows made it to disk.
    lines = first.splitlines(keepends=True)
    out.write_text("".join(lines[:4]))
    kept = {row["path"]: row for row in _rows(out)}
    # The corrupt file is repaired meanwhile: it is retried, not skipped.
    shutil.copy(image_folder / "00000404_000.png", image_folder / "truncated.png")

    assert _run(image_folder, *common) == 0
    rows = _rows(out)
    keys = [row["path"] for row in rows]
    assert len(keys) == len(set(keys)) == 7  # 6 from before + the repaired file, none twice
    for key, row in kept.items():
        assert next(r for r in rows if r["path"] == key) == row  # earlier rows untouched
    errors = _rows(tmp_path / "scores.errors.csv")
    assert [row["path"] for row in errors] == ["empty.png"]  # this run's failures only

    # Nothing left to do: a third run scores nothing and changes nothing.
    before = out.read_text()
    assert _run(image_folder, *common) == 0
    assert out.read_text() == before

    # --overwrite starts afresh.
    assert _run(image_folder, *common, "--overwrite") == 0
    assert len(_rows(out)) == 7


def test_json_output_resumes_too(image_folder: Path, tmp_path: Path, model_dir: Path, onnx_dir: Path) -> None:
    out = tmp_path / "scores.json"
    common = ("--out", out, "--model-dir", model_dir, "--onnx-dir", onnx_dir)
    assert _run(image_folder, *common) == 0
    document = json.loads(out.read_text())
    assert document["model"]["sha256"] == load_model_card(model_dir).sha256
    assert document["model"]["labels"] == list(LABELS)
    assert len(document["scores"]) == 6
    assert set(document["scores"][0]["probabilities"]) == set(LABELS)

    document["scores"] = document["scores"][:2]
    out.write_text(json.dumps(document))
    assert _run(image_folder, *common) == 0
    paths = [row["path"] for row in json.loads(out.read_text())["scores"]]
    assert len(paths) == len(set(paths)) == 6


def test_csv_input_with_image_root(
    tmp_path: Path, fixture_images: list[Path], model_dir: Path, onnx_dir: Path
) -> None:
    """The NIH layout: an `Image` column of bare file names, the files in another folder."""
    listing = tmp_path / "labels.csv"
    names = [image.name for image in fixture_images[:2]] + ["missing.png", fixture_images[0].name]
    listing.write_text("Image,Cardiomegaly\n" + "".join(f"{name},0\n" for name in names))
    out = tmp_path / "out" / "scores.csv"
    root = fixture_images[0].parent
    assert (
        _run(listing, "--image-root", root, "--out", out, "--model-dir", model_dir, "--onnx-dir", onnx_dir)
        == 0
    )
    assert [row["path"] for row in _rows(out)] == names[:2]  # the duplicate is scored once
    errors = _rows(tmp_path / "out" / "scores.errors.csv")
    assert [(row["path"], row["error"]) for row in errors] == [("missing.png", "FileNotFoundError")]


def test_refuses_to_mix_models_or_formats(
    image_folder: Path, tmp_path: Path, model_dir: Path, onnx_dir: Path
) -> None:
    common = ("--model-dir", model_dir, "--onnx-dir", onnx_dir)
    foreign = tmp_path / "foreign.csv"
    foreign.write_text(",".join(batch.SCORE_COLUMNS) + "\n" + "x.png," + "0.5," * 14 + ",0123456789abcdef\n")
    assert _run(image_folder, "--out", foreign, *common) == 2
    assert _run(image_folder, "--out", tmp_path / "scores.parquet", *common) == 2
    assert _run(tmp_path / "nowhere", "--out", tmp_path / "s.csv", *common) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(empty, "--out", tmp_path / "s.csv", *common) == 1
