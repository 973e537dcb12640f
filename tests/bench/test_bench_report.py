"""The benchmark's arithmetic and verdicts, and the load test summary, on made-up figures."""

from pathlib import Path

from bench.__main__ import ratio, report, verdict
from bench.loadgen import LoadResult
from loadtest.summary import main as summary_main


def test_percentiles_and_throughput() -> None:
    result = LoadResult(concurrency=2, seconds=10.0, latencies_ms=[float(x) for x in range(1, 101)])
    assert result.throughput == 10.0
    assert result.percentile(50) == 50.5
    assert 95 <= (result.percentile(95) or 0) <= 96
    result.errors["HTTP 503"] = 3
    summary = result.summary()
    assert summary["failures"] == 3 and summary["requests_ok"] == 100


def test_verdicts() -> None:
    assert verdict(3.2, 3.0, True) == "MET"
    assert verdict(2.9, 3.0, True) == "NOT MET"
    assert verdict(1.3, 1.2, False) == "NOT MET"
    assert verdict(None, 1.2, False) == "not measured"
    assert ratio(10, 0) is None and ratio(None, 2) is None and ratio(6, 2) == 3.0


def _results() -> dict[str, object]:
    return {
        "service_throughput": {"throughput_rps": 12.0, "concurrency": 8},
        "baseline_throughput": {"throughput_rps": 3.0},
        "service_c1_probabilities": {"p50_ms": 55.0},
        "bare": {"p50_ms": 50.0},
        "heatmaps_1_label": {"p50_ms": 100.0, "field_counts": {"tensorflow": 30}},
        "heatmaps_14_labels": {"p50_ms": 250.0, "field_counts": {"tensorflow": 30}},
        "api_rss_mb": {"peak_under_load": 300.0, "peak_under_heatmap_load": 320.0},
        "sidecar_rss_mb_peak": 900.0,
        "batch": {
            "images": 64,
            "batch_tool_images_per_s": 19.0,
            "bare_sequential_images_per_s": 20.0,
            "model_only_images_per_s": 25.0,
        },
        "int8": {"available": False, "note": "no int8"},
    }


def test_report_prints_every_measure_with_its_target(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = {row["id"]: row for row in report(_results())}
    assert rows["a"]["value"] == 4.0 and rows["a"]["verdict"] == "MET"
    assert rows["b"]["value"] == 1.1 and rows["b"]["verdict"] == "MET"
    assert rows["c"]["value"] == 2.5 and rows["c"]["verdict"] == "NOT MET"
    assert rows["d"]["verdict"] == "not measured"
    assert rows["memory"]["verdict"] == "MET"
    assert rows["batch"]["value"] == 0.95 and rows["batch"]["verdict"] == "MET"
    printed = capsys.readouterr().out
    for text in (">= 3x", "<= 1.2x", "<= 2x", "<= 600 MB", ">= 0.9x", "NOT MET"):
        assert text in printed


def test_report_without_a_baseline_says_not_measured() -> None:
    results = _results()
    del results["baseline_throughput"]
    rows = {row["id"]: row for row in report(results)}
    assert rows["a"]["verdict"] == "not measured"


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
