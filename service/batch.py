"""Batch scoring for research teams: a folder or a CSV of radiographs -> one row of probabilities each.

    python -m service.batch FOLDER_OR_CSV --out scores.csv      (or scores.json)

* Inputs: every PNG/JPEG/DICOM under a folder (recursively), or the paths in a CSV column (`path`,
  `file`, `filename`, `image`, `Image` or `Image Index`; --path-column to choose), relative to
  --image-root (default: the CSV's folder). The format is recognised from the content.
* The API's model runtime (service.api.model_runtime: the exported ONNX model on onnxruntime, the
  shared cxr preprocessing, the card/manifest/sha256 checks), without FastAPI.
* Unreadable files are skipped and listed in a separate errors CSV (default: OUT with the suffix
  .errors.csv), with the reason; they are retried on the next run.
* Resumable: files already in OUT are skipped, so an interrupted run continues where it stopped
  (CSV rows are flushed every batch, or every 16 images at batch size 1; JSON is rewritten
  atomically every --checkpoint-seconds).
* Sharding (service.batch_shards): `--shard INDEX/COUNT`, or JOB_COMPLETION_INDEX + SHARD_COUNT
  in the environment (a Kubernetes Indexed Job), scores only the files whose path hashes to INDEX
  and writes OUT as OUT.shard-INDEX-of-COUNT; `python -m service.batch_merge` joins the shards.
* Throughput: one worker thread per core reads, decodes, preprocesses and scores its own files
  with a one-thread onnxruntime run (decoders and onnxruntime release the GIL); with
  --batch-size N > 1 the workers decode and onnxruntime scores batches of N. See `make bench` for
  the figure against bare onnxruntime.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from cxr.imaging import decode_image
from cxr.labels import LABELS
from cxr.model_card import ModelCard
from cxr.onnx_manifest import INPUT_NAME, PROBABILITIES_OUTPUT, ExportManifest
from service.api.settings import Settings, usable_cpus
from service.batch_shards import SHARD_COUNT_ENV, SHARD_INDEX_ENV, Shard, ShardError, shard_from_environ

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}  # DICOM files often have no suffix
PATH_COLUMNS = ("path", "file", "filename", "image", "Image", "Image Index")
SCORE_COLUMNS = ("path", *LABELS, "findings", "model_sha256")
ERROR_COLUMNS = ("path", "error", "message")
DEFAULT_MODEL_DIR = "models/chexnet-densenet121"
DEFAULT_ONNX_DIR = "build"
# One image per onnxruntime run: at 224 px a batch of 16 costs more per image than a batch of 1
# (DenseNet's concatenations outgrow the caches; README, Performance).
DEFAULT_BATCH_SIZE = 1
WRITE_EVERY = 16  # images per write (and CSV flush) when scoring one at a time


class BatchInputError(RuntimeError):
    """The command cannot run at all (missing input, mismatched model, foreign output file)."""


# --- The model ------------------------------------------------------------------------------------


class OnnxScorer:
    """The API's model runtime (service.api.model_runtime: no FastAPI, no TensorFlow) scoring batches.

    Loading goes through `load_model_runtime`, so the batch command refuses exactly what the API
    refuses (card and export that do not belong together, wrong sha256, a head that does not fit).
    """

    def __init__(
        self,
        model_dir: str | Path,
        onnx_dir: str | Path,
        *,
        int8: bool = False,
        threads: int = 1,  # 0: one per usable core (for batches of more than one image)
        allow_spinning: bool = False,
    ) -> None:
        import onnxruntime as ort

        from service.api.model_runtime import ModelLoadError, load_model_runtime, session_options

        threads = threads or usable_cpus()
        try:
            runtime = load_model_runtime(Path(model_dir), Path(onnx_dir), intra_op_threads=1)
        except ModelLoadError as error:
            raise BatchInputError(str(error)) from None
        self.card: ModelCard = runtime.card
        self.manifest: ExportManifest = runtime.manifest
        self.onnx_path = Path(onnx_dir) / self.manifest.onnx_file
        expected = self.manifest.onnx_sha256
        if int8:
            quantization = self.manifest.quantization
            if quantization is None:
                raise BatchInputError(
                    f"{onnx_dir} has no int8 model (the export did not quantise): use --precision fp32"
                )
            self.onnx_path, expected = Path(onnx_dir) / quantization.file, quantization.sha256
        data = self.onnx_path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise BatchInputError(f"{self.onnx_path} does not match the sha256 in its manifest")
        # The batch's own session: onnxruntime's worker threads must not spin between runs, or they
        # take the CPU the decode threads need (and collapse when the machine is shared).
        options = session_options(threads, 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self._runtime = replace(runtime, session=self.session)  # the checked runtime's session is dropped

    def preprocess(self, data: bytes) -> np.ndarray:
        """Image file bytes -> model input: cxr.imaging decoding, then the API's preprocessing."""
        return self._runtime.preprocess(decode_image(data).pixels)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(n, size, size, 3) float32 -> (n, 14) probabilities (the feature map is not computed)."""
        (probabilities,) = self.session.run(
            [PROBABILITIES_OUTPUT], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        )
        return np.asarray(probabilities, dtype=np.float32)


# --- Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    key: str  # what the output rows are keyed by: the path as given (CSV) or relative to the folder
    path: Path


def list_inputs(
    source: Path, *, path_column: str | None = None, image_root: Path | None = None
) -> list[Item]:
    if source.is_dir():
        items = [
            Item(file.relative_to(source).as_posix(), file)
            for file in sorted(source.rglob("*"))
            if file.is_file()
            and not any(part.startswith(".") for part in file.relative_to(source).parts)
            and file.suffix.lower() in IMAGE_SUFFIXES
        ]
        return items
    if source.is_file() and source.suffix.lower() == ".csv":
        root = image_root if image_root is not None else source.parent
        with open(source, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            column = path_column or next((name for name in PATH_COLUMNS if name in columns), None)
            if column is None or column not in columns:
                raise BatchInputError(
                    f"{source} has no path column ({', '.join(PATH_COLUMNS)}); choose one with --path-column"
                )
            keys = [row[column].strip() for row in reader if row.get(column, "").strip()]
        unique = list(dict.fromkeys(keys))  # a file listed twice is scored once
        return [Item(key, Path(key) if Path(key).is_absolute() else root / key) for key in unique]
    raise BatchInputError(f"{source} is neither a folder nor a .csv file")


# --- Outputs --------------------------------------------------------------------------------------


def errors_path_for(out: Path) -> Path:
    return out.with_name(out.stem + ".errors.csv")


class ScoreWriter:
    """Appends scored rows to OUT (.csv or .json) and knows which keys OUT already holds."""

    def __init__(self, out: Path, card: ModelCard, *, resume: bool, checkpoint_seconds: float = 30.0) -> None:
        self.out = out
        self.card = card
        self.format = out.suffix.lower().lstrip(".")
        if self.format not in ("csv", "json"):
            raise BatchInputError(f"--out must end in .csv or .json, not {out.name}")
        self.model_sha = card.sha256[:16]
        self.checkpoint_seconds = checkpoint_seconds
        self.done: set[str] = set()
        self._json_rows: list[dict[str, object]] = []
        self._dirty = False
        self._last_save = time.monotonic()
        if resume and out.exists() and out.stat().st_size > 0:
            self._load_existing()
        out.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "csv":
            fresh = not self.done
            self._handle = open(out, "w" if fresh else "a", newline="")  # noqa: SIM115 (closed in close())
            self._csv = csv.writer(self._handle)
            if fresh:
                self._csv.writerow(SCORE_COLUMNS)
                self._handle.flush()

    def _load_existing(self) -> None:
        if self.format == "csv":
            with open(self.out, newline="") as handle:
                reader = csv.DictReader(handle)
                if tuple(reader.fieldnames or ()) != SCORE_COLUMNS:
                    raise BatchInputError(f"{self.out} exists with other columns; choose another --out")
                for row in reader:
                    self._check_model(row.get("model_sha256", ""))
                    self.done.add(row["path"])
        else:
            document = json.loads(self.out.read_text())
            if not isinstance(document, dict) or not isinstance(document.get("scores"), list):
                raise BatchInputError(
                    f"{self.out} is not a scores file of this command; choose another --out"
                )
            for row in document["scores"]:
                self._check_model(str(row.get("model_sha256", "")))
                self.done.add(row["path"])
            self._json_rows = document["scores"]

    def _check_model(self, sha: str) -> None:
        if sha != self.model_sha:
            raise BatchInputError(
                f"{self.out} holds scores of another model ({sha}, this one is {self.model_sha}); "
                "choose another --out or pass --overwrite"
            )

    def write(self, keys: Sequence[str], probabilities: np.ndarray) -> None:
        thresholds = self.card.thresholds
        for key, row in zip(keys, probabilities, strict=True):
            findings = [label for label, p in zip(LABELS, row, strict=True) if p >= thresholds[label]]
            if self.format == "csv":
                self._csv.writerow([key, *(f"{p:.6f}" for p in row), ";".join(findings), self.model_sha])
            else:
                self._json_rows.append(
                    {
                        "path": key,
                        "probabilities": {
                            label: round(float(p), 6) for label, p in zip(LABELS, row, strict=True)
                        },
                        "findings": findings,
                        "model_sha256": self.model_sha,
                    }
                )
            self.done.add(key)
        if self.format == "csv":
            self._handle.flush()
        else:
            self._dirty = True
            if time.monotonic() - self._last_save >= self.checkpoint_seconds:
                self._save_json()

    def _save_json(self) -> None:
        document = {
            "model": {
                "name": self.card.name,
                "version": self.card.version,
                "sha256": self.card.sha256,
                "input_size": self.card.input_size,
                "labels": list(LABELS),
                "thresholds": self.card.thresholds,
            },
            "scores": self._json_rows,
        }
        temporary = self.out.with_name(self.out.name + ".tmp")
        temporary.write_text(json.dumps(document, indent=1) + "\n")
        os.replace(temporary, self.out)
        self._dirty = False
        self._last_save = time.monotonic()

    def close(self) -> None:
        if self.format == "csv":
            self._handle.close()
        elif self._dirty or not self.out.exists():
            self._save_json()


# --- The pipeline ---------------------------------------------------------------------------------


@dataclass
class Summary:
    total: int = 0
    already_done: int = 0
    scored: int = 0
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


def _load(scorer: OnnxScorer, item: Item) -> np.ndarray:
    return scorer.preprocess(item.path.read_bytes())


def _load_and_predict(scorer: OnnxScorer, item: Item) -> np.ndarray:
    return scorer.predict(_load(scorer, item)[np.newaxis])[0]


def _prepared(
    work: Callable[[Item], np.ndarray], items: Sequence[Item], pool: ThreadPoolExecutor, window: int
) -> Iterator[tuple[Item, np.ndarray | BaseException]]:
    """(item, work(item) or its exception) in input order, at most `window` files in flight."""
    pending: deque[tuple[Item, Future[np.ndarray]]] = deque()
    iterator = iter(items)
    for item in iterator:
        pending.append((item, pool.submit(work, item)))
        if len(pending) >= window:
            break
    while pending:
        item, future = pending.popleft()
        next_item = next(iterator, None)
        if next_item is not None:
            pending.append((next_item, pool.submit(work, next_item)))
        try:
            yield item, future.result()
        except Exception as error:  # one bad file must not stop a run of thousands
            yield item, error


def score(
    scorer: OnnxScorer,
    items: Sequence[Item],
    writer: ScoreWriter,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    progress: bool = True,
) -> Summary:
    """Score `items` into `writer`. batch_size 1: each worker thread reads, decodes and scores
    its own files, the way one single-threaded loop per core would (the scorer then needs one
    onnxruntime thread); larger: workers decode, and onnxruntime scores batches here."""
    from tqdm import tqdm

    summary = Summary(total=len(items))
    todo = [item for item in items if item.key not in writer.done]
    summary.already_done = len(items) - len(todo)
    workers = workers or usable_cpus()  # a CPU quota's cores, not the node's
    per_image = batch_size == 1
    work = partial(_load_and_predict if per_image else _load, scorer)
    chunk = WRITE_EVERY if per_image else batch_size
    started = time.perf_counter()
    keys: list[str] = []
    arrays: list[np.ndarray] = []  # probabilities (per image) or inputs (batches)
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="score") as pool,
        tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True) as bar,
    ):

        def flush() -> None:
            if keys:
                stacked = np.stack(arrays)
                writer.write(keys, stacked if per_image else scorer.predict(stacked))
                summary.scored += len(keys)
                bar.update(len(keys))
                keys.clear()
                arrays.clear()

        for item, result in _prepared(work, todo, pool, window=max(2 * chunk, 2 * workers)):
            if isinstance(result, BaseException):
                summary.failed.append((item.key, type(result).__name__, str(result)))
                bar.update(1)
                bar.set_postfix(failed=len(summary.failed), refresh=False)
                continue
            keys.append(item.key)
            arrays.append(result)
            if len(keys) >= chunk:
                flush()
        flush()
    summary.seconds = time.perf_counter() - started
    return summary


def write_errors(path: Path, failed: Sequence[tuple[str, str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(ERROR_COLUMNS)
        out.writerows(failed)


# --- Command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.batch",
        description="Score a folder or CSV of chest radiographs (PNG, JPEG, DICOM) with the exported model.",
    )
    parser.add_argument(
        "source", type=Path, help="a folder (searched recursively) or a CSV with a path column"
    )
    parser.add_argument("--out", type=Path, required=True, help="scores file: .csv or .json")
    parser.add_argument("--errors", type=Path, help="unreadable files (default: OUT with suffix .errors.csv)")
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", DEFAULT_MODEL_DIR))
    )
    parser.add_argument("--onnx-dir", type=Path, default=Path(os.environ.get("ONNX_DIR", DEFAULT_ONNX_DIR)))
    parser.add_argument("--path-column", help="CSV column holding the image paths")
    parser.add_argument(
        "--image-root", type=Path, help="base of relative CSV paths (default: the CSV's folder)"
    )
    parser.add_argument(
        "--shard",
        type=_shard_argument,
        help=f"score only shard INDEX/COUNT (e.g. 0/4) into OUT.shard-INDEX-of-COUNT "
        f"(default: {SHARD_INDEX_ENV}/{SHARD_COUNT_ENV} when both are set)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="images per onnxruntime run; 1: each worker scores its own files",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="reading and decoding threads (default: one per core)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("ORT_INTRA_OP_THREADS", "0") or 0),
        help="onnxruntime intra-op threads (default ORT_INTRA_OP_THREADS, else 1 with --batch-size 1 "
        "and one per core with larger batches)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        default=os.environ.get("MODEL_PRECISION") or Settings.model_fields["model_precision"].default,
        help="the ONNX graph: int8 (the export's quantised model) or fp32 (default MODEL_PRECISION, "
        "else the API's default)",
    )
    parser.add_argument(
        "--allow-spinning",
        action="store_true",
        help="let onnxruntime threads spin (only on a dedicated machine)",
    )
    parser.add_argument("--overwrite", action="store_true", help="start OUT afresh instead of resuming")
    parser.add_argument("--checkpoint-seconds", type=float, default=30.0, help="JSON output: save period")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _shard_argument(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ShardError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        print("--batch-size must be at least 1", file=sys.stderr)
        return 2
    shard: Shard | None = args.shard
    if shard is None:
        try:
            shard = shard_from_environ(os.environ)
        except ShardError as error:
            parser.error(str(error))
    out: Path = args.out if shard is None else shard.output_path(args.out)
    errors_path = args.errors or errors_path_for(out)
    if shard is not None and args.errors:
        errors_path = shard.output_path(args.errors)
    try:
        listed = list_inputs(args.source, path_column=args.path_column, image_root=args.image_root)
        items = listed if shard is None else [item for item in listed if shard.holds(item.key)]
        scorer = OnnxScorer(
            args.model_dir,
            args.onnx_dir,
            int8=args.precision == "int8",
            threads=args.threads or (1 if args.batch_size == 1 else 0),
            allow_spinning=args.allow_spinning,
        )
        writer = ScoreWriter(
            out, scorer.card, resume=not args.overwrite, checkpoint_seconds=args.checkpoint_seconds
        )
    except (BatchInputError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = score(
            scorer,
            items,
            writer,
            batch_size=args.batch_size,
            workers=args.workers or None,
            progress=not args.no_progress,
        )
    finally:
        writer.close()
    if summary.failed or errors_path.exists():
        write_errors(errors_path, summary.failed)
    print(
        (f"shard {shard}: {summary.total} of {len(listed)} files; " if shard is not None else "")
        + f"{summary.scored} scored, {summary.already_done} already in {out}, "
        f"{len(summary.failed)} unreadable"
        + (f" (listed in {errors_path})" if summary.failed else "")
        + f"; {summary.images_per_second:.1f} images/s with {scorer.onnx_path.name}",
        file=sys.stderr,
    )
    if not listed:
        print(f"error: no images found in {args.source}", file=sys.stderr)
        return 1
    return 1 if summary.failed and summary.scored == 0 and summary.already_done == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
