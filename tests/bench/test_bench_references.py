"""The roof and the stage table run the real model on a real radiograph."""

import os
from pathlib import Path

import pytest

from bench.references import BareOnnx, Roof, machine_speed_ms
from bench.services import api_settings
from bench.stages import in_process_stages
from bench.sweep import SweepTarget, concurrent_inferences, format_concurrent_inferences


def test_the_bare_loop_scores_a_radiograph(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path]
) -> None:
    probabilities = BareOnnx(model_dir, onnx_dir, threads=1).score(fixture_images[0].read_bytes())
    assert probabilities.shape == (1, 14) and ((probabilities > 0) & (probabilities < 1)).all()


def test_the_speed_probe_times_the_bare_loop(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path]
) -> None:
    assert machine_speed_ms(model_dir, onnx_dir, fixture_images[0].read_bytes(), repeats=1) > 0


@pytest.mark.slow  # starts two processes that load the model
def test_the_roof_counts_images_from_every_process(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path]
) -> None:
    with Roof(model_dir, onnx_dir, fixture_images[0].read_bytes(), processes=2) as roof:
        assert roof.processes == 2
        assert roof.images_per_second(1.0) > 0


def test_every_stage_costs_cpu(model_dir: Path, onnx_dir: Path, fixture_images: list[Path]) -> None:
    settings = api_settings(model_dir, onnx_dir, "http://127.0.0.1:9")
    stages = in_process_stages(settings, fixture_images[0].read_bytes(), repeats=3)
    assert list(stages) == [
        "multipart parsing",
        "decode",
        "out-of-distribution guard",
        "preprocess",
        "inference (process CPU)",
        "response and JSON",
    ]
    assert all(value > 0 for value in stages.values()), stages
    assert os.getloadavg()  # the table is CPU time: no timing assertion on a shared machine


@pytest.mark.slow  # starts two API processes
def test_concurrent_inferences_alternates_two_apis(
    model_dir: Path, onnx_dir: Path, fixture_images: list[Path], tmp_path: Path
) -> None:
    target = SweepTarget(
        model_dir, onnx_dir, fixture_images[0].read_bytes(), "http://127.0.0.1:9", tmp_path, 2
    )
    summary = concurrent_inferences(target, 0.5, 2)
    cores = len(os.sched_getaffinity(0))
    assert summary["what"] == f"c=2: {cores + 1} / {cores} concurrent inferences"
    assert len(summary["rounds"]) == 2 and all(value > 0 for value in summary["rounds"])
    assert summary["numerator_median"] > 0 and summary["denominator_median"] > 0
    assert format_concurrent_inferences(summary)[0].startswith(summary["what"])
