"""Shared test fixtures: paths, real images, the model under test and its ONNX export."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import require_data

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
NIH_DATA = Path(os.environ.get("CXR_NIH_DATA", REPO.parent / "shared" / "data" / "nih"))
SHARED_DATA = NIH_DATA.parent  # nih/, nih-extra/, nih-thumbs/
SHIPPED_MODEL = REPO / "models" / "chexnet-densenet121"
DEV_MODEL = REPO / "runs" / "dev-model"  # a barely trained model, used before a model is shipped
BUILD = REPO / "build"


@pytest.fixture(scope="session")
def fixture_images() -> list[Path]:
    """The committed real NIH radiographs."""
    return sorted(FIXTURES.glob("*.png"))


@pytest.fixture(scope="session")
def nih_data() -> Path:
    """The 388-image NIH sample beside the repo (skipped where absent, a failure under CI=true)."""
    return require_data(NIH_DATA)


@pytest.fixture(scope="session")
def shared_datasets() -> list[Path]:
    """nih/, nih-extra/ and nih-thumbs/ beside the repo (skipped where absent, a failure under CI=true)."""
    return [require_data(SHARED_DATA / name) for name in ("nih", "nih-extra", "nih-thumbs")]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model under test: CXR_TEST_MODEL_DIR, else the shipped model."""
    chosen = os.environ.get("CXR_TEST_MODEL_DIR")
    for candidate in ([Path(chosen)] if chosen else []) + [SHIPPED_MODEL, DEV_MODEL]:
        if (candidate / "model_card.json").is_file():
            return candidate
    pytest.fail("no model: set CXR_TEST_MODEL_DIR or ship one under models/")


@pytest.fixture(scope="session")
def onnx_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export of `model_dir`: build/ when it was made from these weights, else exported now."""
    from cxr.model_card import load_model_card
    from cxr.onnx_manifest import CALIBRATION_RANGES_FILE, MANIFEST_FILE, load_manifest

    card = load_model_card(model_dir)
    # As `make export`: the int8 model too, from the calibration ranges recorded beside the model.
    int8 = ["--quantize", "int8"] if (model_dir / CALIBRATION_RANGES_FILE).is_file() else []
    chosen = os.environ.get("CXR_TEST_ONNX_DIR")
    for candidate in ([Path(chosen)] if chosen else []) + [BUILD]:
        if not (candidate / MANIFEST_FILE).is_file():
            continue
        manifest = load_manifest(candidate)
        if manifest.keras_sha256 == card.sha256 and (manifest.quantization is not None or not int8):
            return candidate
    out = tmp_path_factory.mktemp("onnx")
    subprocess.run(
        [sys.executable, "-m", "export", "--model-dir", str(model_dir), "--out", str(out), *int8],
        check=True,
        cwd=REPO,
    )
    return out
