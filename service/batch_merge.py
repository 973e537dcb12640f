"""Join the outputs of a sharded batch run into one scores file, and say what is incomplete.

    python -m service.batch_merge --out scores.csv --shards 4 [--source ARCHIVE]

Reads OUT.shard-I-of-4 (and its .errors.csv) for every I, writes OUT (rows sorted by path) and
OUT's errors CSV with every shard's unreadable files, then reports:
* shards with no output file (never ran, or wrote elsewhere);
* files in more than one shard, or in a shard they do not hash to (a run with another count);
* files that failed (from the errors CSVs);
* with --source (the archive or CSV the shards scored): files in no output and no errors CSV
  (a shard that stopped early).
Exit 0 when every file is scored, 1 when anything above is found (OUT is still written with what
there is), 2 when the shards cannot be joined (other models, other columns, no shard at all).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.batch import (
    SCORE_COLUMNS,
    BatchInputError,
    errors_path_for,
    list_inputs,
    write_errors,
)
from service.batch_shards import Shard, ShardError, shard_of

SHOWN = 20  # files named per problem in the report; the rest are counted


@dataclass
class ShardOutput:
    shard: Shard
    rows: list[dict[str, Any]]
    failed: list[tuple[str, str, str]]
    model: dict[str, Any] | None = None  # the JSON document's model block


@dataclass
class MergeReport:
    missing_shards: list[int] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    misplaced: list[str] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    missing_files: list[str] | None = None  # None: no --source to compare with
    scored: int = 0

    @property
    def complete(self) -> bool:
        return not (
            self.missing_shards or self.duplicated or self.misplaced or self.failed or self.missing_files
        )


def read_shard(shard: Shard, out: Path) -> ShardOutput | None:
    """The rows and failures shard `shard` wrote for OUT, or None when it wrote nothing."""
    path = shard.output_path(out)
    if not path.is_file():
        return None
    model = None
    if path.suffix.lower() == ".json":
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or not isinstance(document.get("scores"), list):
            raise BatchInputError(f"{path} is not a scores file of service.batch")
        rows, model = document["scores"], document.get("model")
    else:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != SCORE_COLUMNS:
                raise BatchInputError(f"{path} has other columns than service.batch writes")
            rows = list(reader)
    failed: list[tuple[str, str, str]] = []
    errors = errors_path_for(path)
    if errors.is_file():
        with open(errors, newline="") as handle:
            failed = [(row["path"], row["error"], row["message"]) for row in csv.DictReader(handle)]
    return ShardOutput(shard, rows, failed, model)


def merge(outputs: Sequence[ShardOutput], count: int, expected: Sequence[str] | None) -> MergeReport:
    """What the shard outputs say together; `expected` is every key the source lists."""
    report = MergeReport()
    present = {output.shard.index for output in outputs}
    report.missing_shards = [index for index in range(count) if index not in present]
    seen: set[str] = set()
    for output in outputs:
        for row in output.rows:
            key = row["path"]
            if key in seen:
                report.duplicated.append(key)
            seen.add(key)
            if shard_of(key, count) != output.shard.index:
                report.misplaced.append(key)
    # A file that failed once and was scored on a resumed run is not a failure.
    report.failed = [failure for output in outputs for failure in output.failed if failure[0] not in seen]
    report.scored = len(seen)
    if expected is not None:
        accounted = seen | {failure[0] for failure in report.failed}
        report.missing_files = [key for key in expected if key not in accounted]
    return report


def write_merged(out: Path, outputs: Sequence[ShardOutput], failed: Sequence[tuple[str, str, str]]) -> None:
    models = {str(row.get("model_sha256", "")) for output in outputs for row in output.rows}
    if len(models) > 1:
        raise BatchInputError(f"the shards hold scores of different models ({', '.join(sorted(models))})")
    rows = sorted((row for output in outputs for row in output.rows), key=lambda row: str(row["path"]))
    temporary = out.with_name(out.name + ".tmp")
    if out.suffix.lower() == ".json":
        model = next((output.model for output in outputs if output.model is not None), None)
        temporary.write_text(json.dumps({"model": model, "scores": rows}, indent=1) + "\n")
    else:
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=SCORE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(temporary, out)
    errors = errors_path_for(out)
    if failed or errors.exists():
        write_errors(errors, sorted(failed))


def _named(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def describe(report: MergeReport, count: int, out: Path) -> list[str]:
    lines = [
        f"{report.scored} files scored by {count - len(report.missing_shards)} of {count} shards into {out}"
    ]
    if report.missing_shards:
        lines.append(f"missing shards (no output file): {', '.join(map(str, report.missing_shards))}")
    if report.duplicated:
        lines.append(f"{len(report.duplicated)} files in more than one shard: {_named(report.duplicated)}")
    if report.misplaced:
        lines.append(
            f"{len(report.misplaced)} files in a shard they do not hash to (a run with another count?): "
            f"{_named(report.misplaced)}"
        )
    if report.failed:
        keys = [f"{key} ({error})" for key, error, _ in report.failed]
        lines.append(f"{len(report.failed)} files failed (in {errors_path_for(out)}): {_named(keys)}")
    if report.missing_files:
        lines.append(
            f"{len(report.missing_files)} files of the source are in no shard's output: "
            + _named(report.missing_files)
        )
    lines.append("complete" if report.complete else "INCOMPLETE")
    return lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.batch_merge",
        description="Join the outputs of `python -m service.batch --shard I/N`; report what is missing.",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="the OUT the shards were given (.csv or .json)"
    )
    parser.add_argument("--shards", type=int, required=True, help="the shard count N")
    parser.add_argument(
        "--source", type=Path, help="the folder or CSV the shards scored: report files in no output"
    )
    parser.add_argument("--path-column", help="CSV source: the column holding the image paths")
    parser.add_argument("--image-root", type=Path, help="CSV source: base of relative paths")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        shards = [Shard(index, args.shards) for index in range(max(args.shards, 1))]
    except ShardError as error:
        parser.error(str(error))
    try:
        outputs = [output for shard in shards if (output := read_shard(shard, args.out)) is not None]
        if not outputs:
            raise BatchInputError(f"no shard output found ({shards[0].output_path(args.out)} ...)")
        expected = None
        if args.source is not None:
            items = list_inputs(args.source, path_column=args.path_column, image_root=args.image_root)
            expected = [item.key for item in items]
        report = merge(outputs, args.shards, expected)
        write_merged(args.out, outputs, report.failed)
    except (BatchInputError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in describe(report, args.shards, args.out):
        print(line, file=sys.stderr)
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())
