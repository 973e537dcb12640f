"""The datasets beside the repo (../shared/data): skipped where absent, a failure under CI=true."""

import os
from pathlib import Path

import pytest


def require_data(folder: Path, environ: dict[str, str] | None = None) -> Path:
    """A dataset folder beside the repo. Absent, its tests skip on a workstation but fail under
    CI=true: a moved data path must not silently drop the pipeline tests from CI."""
    environ = dict(os.environ) if environ is None else environ
    if not (folder / "images_labels.csv").is_file():
        message = f"dataset not found at {folder} (images_labels.csv)"
        if environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true needs it")
        pytest.skip(message)
    return folder
