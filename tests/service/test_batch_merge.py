"""A sharded `python -m service.batch` over a folder of real NIH films, joined by
`python -m service.batch_merge`: the same rows as the unsharded run, no overlap, and a report of
missing shards, missing files and failures."""

import csv
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import make_dicom
from PIL import Image

from service import batch, batch_merge
from service.batch_shards import Shard

COUNT = 3


@dataclass
class Runs:
    archive: Path
    unsharded: Path  # scores.csv of the run over the whole archive
    sharded: Path  # the OUT the shards were given (they wrote OUT.shard-I-of-3.csv)
    common: list[str]  # --model-dir ... --onnx-dir ...


def _films(folder: Path, fixtures: list[Path]) -> None:
    """12 readable films (the 4 NIH fixtures as PNG, as JPEG, 2 as DICOM, 2 flipped) in sub-folders,
    and a truncated PNG that cannot be read."""
    for image in fixtures:
        shutil.copy(image, folder / image.name)
        Image.open(image).convert("L").save(folder / "jpeg" / f"{image.stem}.jpg", quality=92)
    for image in fixtures[:2]:
        pixels = np.asarray(Image.open(image).convert("L"), dtype=np.uint16) * 257
        (folder / "dicom" / image.stem).write_bytes(make_dicom(pixels, bits_stored=16))
    for image in fixtures[2:]:
        Image.open(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / "flipped" / image.name)
    (folder / "flipped" / "truncated.png").write_bytes(fixtures[0].read_bytes()[:5000])


def _run(*args: object) -> int:
    return batch.main([str(arg) for arg in args] + ["--batch-size", "4", "--no-progress"])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return sorted(csv.DictReader(handle), key=lambda row: row["path"])


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, fixture_images: list[Path], model_dir: Path, onnx_dir: Path
) -> Iterator[Runs]:
    root = tmp_path_factory.mktemp("sharding")
    archive = root / "archive"
    for sub in ("jpeg", "dicom", "flipped"):
        (archive / sub).mkdir(parents=True)
    _films(archive, fixture_images)
    common = ["--model-dir", str(model_dir), "--onnx-dir", str(onnx_dir)]
    with pytest.MonkeyPatch.context() as env:
        env.delenv("JOB_COMPLETION_INDEX", raising=False)
        env.delenv("SHARD_COUNT", raising=False)
        assert _run(archive, "--out", root / "whole" / "scores.csv", *common) == 0
        sharded = root / "sharded" / "scores.csv"
        for index in range(COUNT - 1):
            assert _run(archive, "--out", sharded, "--shard", f"{index}/{COUNT}", *common) == 0
        # The last shard as a pod of the Indexed Job gets it: from the environment.
        env.setenv("JOB_COMPLETION_INDEX", str(COUNT - 1))
        env.setenv("SHARD_COUNT", str(COUNT))
        assert _run(archive, "--out", sharded, *common) == 0
    yield Runs(archive, root / "whole" / "scores.csv", sharded, common)


def _shard_files(runs: Runs) -> list[Path]:
    return [Shard(index, COUNT).output_path(runs.sharded) for index in range(COUNT)]


def test_the_shards_together_give_the_rows_of_the_unsharded_run(runs: Runs) -> None:
    whole = _rows(runs.unsharded)
    assert len(whole) == 12
    shards = [_rows(path) for path in _shard_files(runs)]
    keys = [{row["path"] for row in rows} for rows in shards]
    for a in range(COUNT):
        for b in range(a + 1, COUNT):
            assert not keys[a] & keys[b], f"shards {a} and {b} overlap"
        assert all(Shard(a, COUNT).holds(key) for key in keys[a])
    assert all(keys), "a shard got nothing: choose other files so the test splits"
    assert sorted((row for rows in shards for row in rows), key=lambda row: row["path"]) == whole
    # The unreadable file is reported by the shard that holds it, as by the unsharded run.
    whole_errors = _rows(batch.errors_path_for(runs.unsharded))
    shard_errors = [
        row
        for path in _shard_files(runs)
        if (errors := batch.errors_path_for(path)).exists()
        for row in _rows(errors)
    ]
    assert [row["path"] for row in whole_errors] == ["flipped/truncated.png"]
    assert shard_errors == whole_errors


def test_the_merge_writes_the_unsharded_rows_and_reports_the_failure(
    runs: Runs, capsys: pytest.CaptureFixture[str]
) -> None:
    code = batch_merge.main(
        ["--out", str(runs.sharded), "--shards", str(COUNT), "--source", str(runs.archive)]
    )
    report = capsys.readouterr().err
    assert code == 1, report  # a film failed: the archive is not completely scored
    assert _rows(runs.sharded) == _rows(runs.unsharded)
    assert _rows(batch.errors_path_for(runs.sharded)) == _rows(batch.errors_path_for(runs.unsharded))
    assert "1 files failed" in report and "flipped/truncated.png" in report
    assert "missing shards" not in report and "in no shard's output" not in report


def test_a_complete_run_merges_with_exit_0(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The readable films only (a CSV source in shuffled order), without the errors files."""
    out = tmp_path / "scores.csv"
    for path in _shard_files(runs):
        shutil.copy(path, out.parent / path.name.replace(runs.sharded.stem, out.stem))
    keys = [row["path"] for row in _rows(runs.unsharded)]
    random.Random(0).shuffle(keys)
    listing = tmp_path / "listing.csv"
    listing.write_text("path\n" + "\n".join(keys) + "\n")
    args = [
        "--out",
        str(out),
        "--shards",
        str(COUNT),
        "--source",
        str(listing),
        "--image-root",
        str(runs.archive),
    ]
    assert batch_merge.main(args) == 0, capsys.readouterr().err
    assert capsys.readouterr().err.strip().endswith("complete")
    assert _rows(out) == _rows(runs.unsharded)


def test_same_file_same_shard_whatever_the_listing_order(runs: Runs, tmp_path: Path) -> None:
    """Shard 1 of the films listed by a shuffled CSV scores exactly what shard 1 of the folder scored."""
    keys = [row["path"] for row in _rows(runs.unsharded)]
    random.Random(1).shuffle(keys)
    listing = tmp_path / "listing.csv"
    listing.write_text("path\n" + "\n".join(keys) + "\n")
    out = tmp_path / "scores.csv"
    assert (
        _run(listing, "--image-root", runs.archive, "--out", out, "--shard", f"1/{COUNT}", *runs.common) == 0
    )
    assert _rows(Shard(1, COUNT).output_path(out)) == _rows(_shard_files(runs)[1])


def test_missing_shards_files_and_overlaps_are_reported(
    runs: Runs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    files = [Shard(index, COUNT).output_path(out) for index in range(COUNT)]
    shutil.copy(_shard_files(runs)[0], files[0])  # shard 1 never ran
    rows = _rows(_shard_files(runs)[2])
    with open(files[2], "w", newline="") as handle:  # shard 2 stopped early, and holds a row of shard 0
        writer = csv.DictWriter(handle, fieldnames=batch.SCORE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows[1:] + _rows(files[0])[:1])
    source = ["--source", str(runs.archive)]
    assert batch_merge.main(["--out", str(out), "--shards", str(COUNT), *source]) == 1
    report = capsys.readouterr().err
    assert "missing shards (no output file): 1" in report
    assert (
        f"1 files in a shard they do not hash to (a run with another count?): {_rows(files[0])[0]['path']}"
        in report
    )
    present = {row["path"] for path in (files[0], files[2]) for row in _rows(path)}
    missing = sorted({row["path"] for row in _rows(runs.unsharded)} - present | {"flipped/truncated.png"})
    assert rows[0]["path"] in missing  # the row shard 2 did not write
    assert f"{len(missing)} files of the source are in no shard's output" in report
    assert all(key in report for key in missing)
    assert report.strip().endswith("INCOMPLETE")

    shutil.copy(files[0], Shard(1, COUNT).output_path(out))  # the same rows in two shards
    assert batch_merge.main(["--out", str(out), "--shards", str(COUNT)]) == 1
    assert "files in more than one shard" in capsys.readouterr().err


def test_merge_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch_merge.main(["--out", str(tmp_path / "scores.csv"), "--shards", "2"]) == 2
    assert "no shard output found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        batch_merge.main(["--out", str(tmp_path / "scores.csv"), "--shards", "0"])
    assert exit_.value.code == 2 and "at least 1" in capsys.readouterr().err
