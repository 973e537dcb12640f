"""The benchmark's arithmetic and verdicts, and the load test summary, on made-up figures."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.__main__ import int8_row, report_rows
from bench.loadgen import LoadResult
from bench.report import Comparison, ordered, print_report, ratio, speed_line, verdict
from loadtest.summary import main as summary_main


def test_percentiles_and_throughput() -> None:
    result = LoadResult(concurrency=2, seconds=10.0, latencies_ms=[float(x) for x in range(1, 101)])
    assert result.throughput == 10.0
    assert result.percentile(50) == 50.5
    assert 95 <= (result.percentile(95) or 0) <= 96
    result.errors["HTTP 503"] = 3
    summary = result.summary()
    assert summary["failures"] == 3 and summary["requests_ok"] == 100


def test_a_change_of_machine_speed_is_flagged() -> None:
    assert "re-run" not in speed_line(68.0, 74.0)
    assert "re-run" in speed_line(68.0, 96.0) and "re-run" in speed_line(96.0, 68.0)
    assert "68.0 at start, 96.0 at end" in speed_line(68.0, 96.0)


def test_verdicts() -> None:
    assert verdict(3.2, 3.0, True) == "MET"
    assert verdict(2.9, 3.0, True) == "NOT MET"
    assert verdict(1.3, 1.2, False) == "NOT MET"
    assert verdict(None, 1.2, False) == "not measured"
    assert ratio(10, 0) is None and ratio(None, 2) is None and ratio(6, 2) == 3.0


def test_rounds_alternate_their_order() -> None:
    assert [ordered(i, "a", "b") for i in range(3)] == [("a", "b"), ("b", "a"), ("a", "b")]


def test_a_comparison_is_judged_on_the_median_of_its_rounds() -> None:
    comparison = Comparison("b", "p50", 1.0, False, " ms")
    for service, bare in ((50.0, 40.0), (36.0, 40.0), (38.0, 40.0)):
        comparison.add(service, bare)
    summary = comparison.summary()
    assert summary["rounds"] == [1.25, 0.9, 0.95]
    assert (summary["value"], summary["low"], summary["high"]) == (0.95, 0.9, 1.25)
    assert summary["verdict"] == "MET" and summary["rounds_met"] == 2
    assert summary["numerator_median"] == 38.0 and summary["denominator_median"] == 40.0
    missing = Comparison("a", "throughput", 3.0, True, " req/s")
    missing.add(12.0, None)
    assert missing.summary()["verdict"] == "not measured"


def quantization(fp32: float, int8: float) -> SimpleNamespace:
    return SimpleNamespace(auroc_fp32=fp32, auroc_int8=int8, evaluated_on="test split (58 images)")


@pytest.mark.parametrize(
    ("speedups", "aurocs", "expected"),
    [
        ((1.6, 1.7, 1.8), (0.62, 0.623), "MET"),
        ((1.6, 1.7, 1.8), (0.62, 0.61), "NOT MET"),  # faster, but loses 0.01 AUROC
        ((1.2, 1.3, 1.3), (0.62, 0.621), "NOT MET"),  # accurate, not fast enough
    ],
)
def test_int8_becomes_the_default_only_when_fast_and_accurate(
    speedups: tuple[float, ...], aurocs: tuple[float, float], expected: str
) -> None:
    speed = Comparison("d", "int8", 1.5, True, " ms")
    for value in speedups:
        speed.add(value * 10.0, 10.0)
    assert int8_row(speed, quantization(*aurocs))["verdict"] == expected
    assert int8_row(speed, None)["verdict"] == "not measured"


def _results() -> dict[str, object]:
    return {
        "api_rss_mb": {"peak_under_load": 300.0, "peak_under_heatmap_load": 320.0},
        "sidecar_rss_mb_peak": 900.0,
        "roof_processes": 2,
        "batch": {"images": 64, "model_only_images_per_s": 25.0},
    }


def _comparisons() -> dict[str, Comparison]:
    figures = {
        "a": (3.0, True, [(12.0, 3.0), (11.0, 3.0), (13.0, 3.0)]),
        "b": (1.0, False, [(55.0, 50.0), (52.0, 50.0), (49.0, 50.0)]),
        "c": (1.5, False, [(250.0, 100.0), (240.0, 100.0), (260.0, 100.0)]),
        "d": (1.5, True, [(50.0, 30.0), (50.0, 31.0), (50.0, 29.0)]),
        "e": (0.85, True, [(18.0, 20.0), (17.0, 20.0), (19.0, 20.0)]),
        "batch": (0.9, True, [(19.0, 20.0), (16.0, 20.0), (21.0, 20.0)]),
    }
    comparisons = {}
    for key, (target, higher, rounds) in figures.items():
        comparisons[key] = Comparison(key, f"measure {key}", target, higher, "")
        for numerator, denominator in rounds:
            comparisons[key].add(numerator, denominator)
    return comparisons


def test_report_prints_every_measure_with_its_target_and_spread(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = {
        entry["id"]: entry for entry in report_rows(_results(), _comparisons(), quantization(0.62, 0.621))
    }
    assert set(rows) == {"a", "b", "c", "d", "e", "memory", "batch"}
    assert rows["a"]["value"] == 4.0 and rows["a"]["verdict"] == "MET"
    assert rows["b"]["value"] == 1.04 and rows["b"]["verdict"] == "NOT MET"
    assert rows["c"]["verdict"] == "NOT MET"
    assert rows["d"]["verdict"] == "MET"
    assert rows["e"]["value"] == 0.9 and rows["e"]["verdict"] == "MET"
    assert rows["memory"]["verdict"] == "MET"
    assert rows["batch"]["value"] == 0.95 and rows["batch"]["verdict"] == "MET"
    assert rows["batch"]["rounds_met"] == 2
    print_report(list(rows.values()), ["stage table here"])
    printed = capsys.readouterr().out
    for text in (
        ">= 3",
        "<= 1",
        "<= 1.5",
        ">= 0.85",
        "<= 600 MB",
        ">= 0.9",
        "NOT MET",
        "0.85-0.95",
        "1/3 rounds met",
    ):
        assert text in printed, text


def test_loadtest_summary(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    header = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    )
    rows = [
        "POST,POST /v1/predict (probabilities),40,0,120,130,90,400,900,2.0,0.0,"
        "120,130,140,150,200,250,300,380,400,400,400",
        "POST,POST /v1/predict (heatmaps=top:3),10,1,300,310,200,700,90000,0.5,0.05,"
        "300,310,320,330,500,600,650,690,700,700,700",
        ",Aggregated,50,1,130,160,90,700,18000,2.5,0.05,130,140,150,160,300,400,600,690,700,700,700",
    ]
    (tmp_path / "run_stats.csv").write_text("\n".join([header, *rows]) + "\n")
    assert summary_main([str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "failures: 1" in printed
    assert "Aggregated" in printed and "2.50" in printed
    assert (tmp_path / "run_summary.json").is_file()
