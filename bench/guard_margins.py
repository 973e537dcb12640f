"""The out-of-distribution guard's statistics on every shared NIH image: the ranges its thresholds
(service/api/ood.py) are set against, and how many images it flags (the false-positive figure).

    .venv/bin/python -m bench.guard_margins [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.procs import REPO

FOLDERS = ("nih", "nih-extra", "nih-thumbs")


def main(argv: list[str] | None = None) -> int:
    from cxr.imaging import decode_image
    from service.api import ood

    parser = argparse.ArgumentParser(
        prog="python -m bench.guard_margins", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    paths = sorted(path for folder in FOLDERS for path in (args.data / folder / "images").glob("*.png"))
    if not paths:
        parser.error(f"no NIH images under {args.data}/{{{','.join(FOLDERS)}}}/images")
    rows, flagged = [], []
    for path in paths:
        decoded = decode_image(path.read_bytes())
        rows.append(vars(ood.image_statistics(decoded)))
        if ood.out_of_distribution_reasons(decoded):
            flagged.append(path.name)
    print(f"{len(paths)} NIH images, {len(flagged)} flagged {flagged[:10]}")
    print(f"{'statistic':<22} {'min':>8} {'1%':>8} {'median':>8} {'99%':>8} {'max':>8}")
    for name in rows[0]:
        values = np.array([row[name] for row in rows])
        quantiles = np.percentile(values, [0, 1, 50, 99, 100])
        print(f"{name:<22} " + " ".join(f"{value:8.4f}" for value in quantiles))
    no_midline = sum(row["midline"] < ood.MIN_MIDLINE for row in rows)
    no_symmetry = sum(row["symmetry"] < ood.MIN_SYMMETRY for row in rows)
    print(f"frontal cues failed alone: midline {no_midline}, symmetry {no_symmetry} (both: flagged)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
