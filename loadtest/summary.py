"""Print (and save as JSON) the figures of a locust run from its CSV statistics.

python -m loadtest.summary loadtest-results/loadtest   # the --csv prefix given to locust
"""

import csv
import json
import sys
from pathlib import Path

COLUMNS = {
    "requests": "Request Count",
    "failures": "Failure Count",
    "requests_per_s": "Requests/s",
    "p50_ms": "50%",
    "p95_ms": "95%",
    "p99_ms": "99%",
    "max_ms": "Max Response Time",
}


def read_stats(prefix: str) -> list[dict[str, object]]:
    rows = []
    with open(f"{prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            entry: dict[str, object] = {"name": row["Name"] or "Aggregated"}
            for key, column in COLUMNS.items():
                value = row.get(column, "")
                entry[key] = float(value) if value not in ("", "N/A") else None
            rows.append(entry)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    prefix = args[0]
    rows = read_stats(prefix)
    width = max(len(str(row["name"])) for row in rows)
    header = f"{'request':<{width}}  {'count':>7} {'fail':>5} {'req/s':>7}" + "".join(
        f" {name:>8}" for name in ("p50 ms", "p95 ms", "p99 ms")
    )
    print(header)
    print("-" * len(header))
    for row in rows:

        def number(key: str, digits: int = 0, row: dict[str, object] = row) -> str:
            value = row[key]
            return "-" if value is None else f"{value:.{digits}f}"

        print(
            f"{row['name']!s:<{width}}  {number('requests'):>7} {number('failures'):>5} "
            f"{number('requests_per_s', 2):>7}"
            + "".join(f" {number(key):>8}" for key in ("p50_ms", "p95_ms", "p99_ms"))
        )
    failures = sum(int(float(str(row["failures"] or 0))) for row in rows if row["name"] != "Aggregated")
    print(f"failures: {failures}")
    Path(f"{prefix}_summary.json").write_text(
        json.dumps({"requests": rows, "failures": failures}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
