"""service.batch_shards: which shard scores a file, parsed from --shard or the Job's environment."""

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from service import batch
from service.batch_shards import Shard, ShardError, shard_from_environ, shard_of

KEYS = [f"patient{n:05d}/study{n % 7}/{n:08d}_000.png" for n in range(4000)]


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", Shard(0, 1)), ("2/4", Shard(2, 4)), (" 3 / 4 ", Shard(3, 4))]
)
def test_parse(text: str, expected: Shard) -> None:
    assert Shard.parse(text) == expected
    assert str(expected) == f"{expected.index}/{expected.count}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/4", "index must be 0..3"),
        ("-1/4", "index must be 0..3"),
        ("0/0", "count must be at least 1"),
        ("1/-2", "count must be at least 1"),
        ("1", "is not INDEX/COUNT"),
        ("a/b", "is not INDEX/COUNT"),
        ("1/2/3", "is not INDEX/COUNT"),
    ],
)
def test_nonsense_is_refused(text: str, message: str) -> None:
    with pytest.raises(ShardError, match=re.escape(message)):
        Shard.parse(text)


def test_environment_index_and_count_go_together() -> None:
    assert shard_from_environ({}) is None
    assert shard_from_environ({"JOB_COMPLETION_INDEX": "2", "SHARD_COUNT": "3"}) == Shard(2, 3)
    with pytest.raises(ShardError, match="SHARD_COUNT is not set"):
        shard_from_environ({"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(ShardError, match="JOB_COMPLETION_INDEX is not set"):
        shard_from_environ({"SHARD_COUNT": "3"})
    with pytest.raises(ShardError, match=r"index must be 0\.\.2"):
        shard_from_environ({"JOB_COMPLETION_INDEX": "3", "SHARD_COUNT": "3"})


def test_each_shard_writes_its_own_file() -> None:
    assert Shard(2, 4).output_path(Path("/scores/scores.csv")) == Path("/scores/scores.shard-2-of-4.csv")
    assert Shard(0, 1).output_path(Path("out.json")) == Path("out.shard-0-of-1.json")


def test_every_file_is_in_exactly_one_shard_and_shards_are_balanced() -> None:
    shards = [Shard(index, 4) for index in range(4)]
    owners = [[shard.index for shard in shards if shard.holds(key)] for key in KEYS]
    assert all(len(owner) == 1 for owner in owners)
    sizes = Counter(owner[0] for owner in owners)
    assert all(900 <= size <= 1100 for size in sizes.values()), sizes  # 1000 expected each


def test_the_shard_of_a_file_does_not_depend_on_the_process() -> None:
    """Python's hash() of a str changes with PYTHONHASHSEED; the shard must not."""
    here = [shard_of(key, 7) for key in KEYS[:200]]
    script = (
        "import json, sys; from service.batch_shards import shard_of; "
        "print(json.dumps([shard_of(k, 7) for k in json.load(sys.stdin)]))"
    )
    for seed in ("1", "2"):
        other = subprocess.run(
            [sys.executable, "-c", script],
            input=json.dumps(KEYS[:200]),
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            cwd=Path(__file__).resolve().parents[2],
        )
        assert json.loads(other.stdout) == here
    assert len(set(here)) == 7


@pytest.mark.parametrize(
    ("args", "environ", "message"),
    [
        (["--shard", "3/3"], {}, "argument --shard: the shard index must be 0..2"),
        (["--shard", "0/0"], {}, "argument --shard: the shard count must be at least 1"),
        ([], {"JOB_COMPLETION_INDEX": "1"}, "SHARD_COUNT is not set"),
        ([], {"JOB_COMPLETION_INDEX": "4", "SHARD_COUNT": "4"}, "the shard index must be 0..3"),
    ],
)
def test_the_batch_command_refuses_nonsense_shards_with_a_usage_error(
    args: list[str],
    environ: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    monkeypatch.delenv("SHARD_COUNT", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_:
        batch.main([str(tmp_path), "--out", str(tmp_path / "scores.csv"), *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written
