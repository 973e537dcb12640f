"""The benchmark's verdicts: each comparison is a ratio measured in several rounds (its two sides
alternated in each), judged on the median, with the range of the rounds beside it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


def ordered(round_index: int, *sides: Any) -> tuple[Any, ...]:
    """The sides in order in even rounds, reversed in odd ones (A B, B A, A B ...)."""
    return sides if round_index % 2 == 0 else tuple(reversed(sides))


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    return "MET" if met else "NOT MET"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)


SPEED_DRIFT = 0.15


def speed_line(start_ms: float, end_ms: float) -> str:
    """The machine-speed probe at both ends of a run, with a warning when it moved by more than
    SPEED_DRIFT: rounds measured while the host changed speed give ratios that move with it."""
    line = (
        f"machine speed (single-threaded bare loop, ms per image): {start_ms:.1f} at start, "
        f"{end_ms:.1f} at end"
    )
    if abs(end_ms / start_ms - 1) > SPEED_DRIFT:
        line += f"\n  ! the machine's speed changed by more than {SPEED_DRIFT:.0%} during the run: re-run"
    return line


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


@dataclass
class Comparison:
    """One ratio with its target: the numerator and denominator of each round."""

    id: str
    what: str
    target: float
    higher_is_better: bool
    unit: str  # of the two sides, e.g. " req/s"
    numerators: list[float | None] = field(default_factory=list)
    denominators: list[float | None] = field(default_factory=list)
    detail: str = ""

    def add(self, numerator: float | None, denominator: float | None) -> None:
        self.numerators.append(numerator)
        self.denominators.append(denominator)

    @property
    def ratios(self) -> list[float]:
        values = (ratio(n, d) for n, d in zip(self.numerators, self.denominators, strict=True))
        return [value for value in values if value is not None]

    def summary(self) -> dict[str, Any]:
        ratios = self.ratios
        median = round(statistics.median(ratios), 3) if ratios else None
        met_rounds = sum(verdict(value, self.target, self.higher_is_better) == "MET" for value in ratios)
        sides = [
            round(statistics.median(values), 2) if values else None
            for values in (
                [v for v in self.numerators if v is not None],
                [v for v in self.denominators if v is not None],
            )
        ]
        comparator = ">=" if self.higher_is_better else "<="
        return {
            "id": self.id,
            "what": self.what,
            "value": median,
            "low": min(ratios) if ratios else None,
            "high": max(ratios) if ratios else None,
            "rounds": ratios,
            "rounds_met": met_rounds,
            "numerator_median": sides[0],
            "denominator_median": sides[1],
            "unit": self.unit,
            "target": f"{comparator} {self.target:g}",
            "verdict": verdict(median, self.target, self.higher_is_better),
            "detail": self.detail,
        }


def row(
    id: str, what: str, value: float | None, target: str, verdict_text: str, detail: str
) -> dict[str, Any]:
    """A figure without rounds (memory, int8 not measured)."""
    return {
        "id": id,
        "what": what,
        "value": value,
        "low": None,
        "high": None,
        "rounds": [],
        "target": target,
        "verdict": verdict_text,
        "detail": detail,
    }


def print_report(rows: list[dict[str, Any]], extra: list[str]) -> None:
    print("\n" + "=" * 110)
    print(f"{'':8}{'measure':<58} {'median':>7} {'range':>13}  {'target':<9} verdict")
    print("-" * 110)
    for entry in rows:
        value = "-" if entry["value"] is None else f"{entry['value']:.2f}"
        spread = f"{entry['low']:.2f}-{entry['high']:.2f}" if entry.get("low") is not None else "-"
        rounds = f" ({entry['rounds_met']}/{len(entry['rounds'])} rounds met)" if entry["rounds"] else ""
        print(
            f"({entry['id']})".ljust(8)
            + f"{entry['what']:<58} {value:>7} {spread:>13}  {entry['target']:<9} {entry['verdict']}{rounds}"
        )
        sides = ""
        if entry.get("numerator_median") is not None or entry.get("denominator_median") is not None:
            unit = entry.get("unit", "")
            sides = (
                f"{fmt(entry.get('numerator_median'), unit, 2)} vs "
                f"{fmt(entry.get('denominator_median'), unit, 2)} (medians); "
            )
        print(f"{'':8}{sides}{entry['detail']}")
    for line in extra:
        print(line)
    print("=" * 110)
