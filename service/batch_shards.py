"""Which files one shard of an archive scores, so N batch processes split it with no coordinator.

A file's shard is the sha256 of its key (its path relative to the archive root, or as the CSV gives
it) modulo the shard count: the same file lands in the same shard whatever the listing order, the
machine or the Python process (Python's own `hash()` of a string changes with PYTHONHASHSEED).

The shard comes from `--shard INDEX/COUNT`, else from the environment: JOB_COMPLETION_INDEX (set by
a Kubernetes Indexed Job in each pod) with SHARD_COUNT (set in the Job to its `completions`).
Each shard writes OUT with `.shard-INDEX-of-COUNT` before the suffix; `python -m
service.batch_merge` joins them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SHARD_INDEX_ENV = "JOB_COMPLETION_INDEX"
SHARD_COUNT_ENV = "SHARD_COUNT"
_SHARD = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


class ShardError(ValueError):
    """A shard that cannot be: not INDEX/COUNT, COUNT < 1, INDEX outside 0..COUNT-1."""


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) that scores the file with this key."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"the shard count must be at least 1, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ShardError(
                f"the shard index must be 0..{self.count - 1} for {self.count} shards, not {self.index}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'INDEX/COUNT', e.g. '0/4' (the first of four)."""
        match = _SHARD.match(text)
        if match is None:
            raise ShardError(f"{text!r} is not INDEX/COUNT (e.g. 0/4)")
        return cls(int(match.group(1)), int(match.group(2)))

    def holds(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    def output_path(self, out: Path) -> Path:
        """OUT of this shard: scores.csv -> scores.shard-2-of-4.csv."""
        return out.with_name(f"{out.stem}.shard-{self.index}-of-{self.count}{out.suffix}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_from_environ(environ: Mapping[str, str]) -> Shard | None:
    """JOB_COMPLETION_INDEX + SHARD_COUNT, both or neither (None: the whole input)."""
    index, count = environ.get(SHARD_INDEX_ENV, "").strip(), environ.get(SHARD_COUNT_ENV, "").strip()
    if not index and not count:
        return None
    if not index or not count:
        missing = SHARD_COUNT_ENV if index else SHARD_INDEX_ENV
        raise ShardError(
            f"{SHARD_INDEX_ENV} and {SHARD_COUNT_ENV} go together; {missing} is not set "
            "(or pass --shard INDEX/COUNT)"
        )
    return Shard.parse(f"{index}/{count}")
