"""Tests that need ../shared skip on a workstation without it, and fail under CI=true."""

from pathlib import Path

import pytest
from shared_data import require_data


def test_a_missing_dataset_fails_under_ci(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true needs it"):
        require_data(tmp_path / "moved", {"CI": "true"})


@pytest.mark.parametrize("environ", [{}, {"CI": "false"}])
def test_a_missing_dataset_skips_elsewhere(tmp_path: Path, environ: dict[str, str]) -> None:
    with pytest.raises(pytest.skip.Exception, match="dataset not found"):
        require_data(tmp_path / "moved", environ)


def test_a_present_dataset_is_returned(tmp_path: Path) -> None:
    (tmp_path / "images_labels.csv").write_text("Image,PatientId\n")
    assert require_data(tmp_path, {"CI": "true"}) == tmp_path
