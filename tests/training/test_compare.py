"""A model against an earlier one, on the held-out films of patients neither learned from."""

import json
from pathlib import Path

import pytest

from training.compare import main as compare_main


@pytest.mark.slow
def test_a_model_compared_with_itself_differs_by_nothing(
    smoke_model: Path, nih_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "comparison.json"
    args = ["--model-dir", str(smoke_model), "--baseline-dir", str(smoke_model), "--dataset", str(nih_data)]
    assert compare_main([*args, "--bootstrap", "50", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    with open(smoke_model / "splits.csv") as handle:
        n_test = sum(line.rstrip().endswith(",test") for line in handle)
    # Its own test patients are the only ones it never learned from: all of them are scored.
    assert result["n_images"] == n_test and result["n_left_out"] == 0
    assert result["mean_auroc"] == result["baseline_mean_auroc"]
    assert result["difference"] == 0.0 and result["difference_ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="learned from"):  # its validation patients it chose an epoch on
        compare_main([*args, "--split", "validation"])
