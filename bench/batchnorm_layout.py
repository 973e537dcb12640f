"""What export.batchnorm buys: the exported graph against the same graph with each of its
BatchNormalizations written back as tf2onnx wrote it (Mul and Add by per-channel constants).
CPU time per inference of the whole process, sides alternated, so it holds on a busy machine.

    .venv/bin/python -m bench.batchnorm_layout [--repeats 30] [--rounds 3]
"""

import argparse
import statistics
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from bench.ort_cpu import process_cpu_seconds
from cxr.imaging import decode_image
from cxr.model_card import load_model_card
from cxr.onnx_manifest import INPUT_NAME, load_manifest
from cxr.preprocessing import preprocess_pixels
from export.batchnorm import drop_unused_initializers


def as_scale_and_shift(proto: onnx.ModelProto) -> int:
    """Each BatchNormalization with mean 0, variance 1 and epsilon 0 (export.batchnorm's) back to
    Mul -> Add; returns how many."""
    graph = proto.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "BatchNormalization":
            nodes.append(node)
            continue
        tensor, scale, offset, mean, variance = node.input
        epsilon = next((attribute.f for attribute in node.attribute if attribute.name == "epsilon"), 1e-5)
        if epsilon != 0 or constants[mean].any() or not (constants[variance] == 1).all():
            raise ValueError(f"{node.name} is not a scale and shift (mean 0, variance 1, epsilon 0)")
        shape = (1, len(constants[scale]), 1, 1)
        for name in (scale, offset):
            graph.initializer.append(numpy_helper.from_array(constants[name].reshape(shape), f"{name}/4d"))
        product = f"{node.output[0]}/scaled"
        nodes += [
            helper.make_node("Mul", [tensor, f"{scale}/4d"], [product]),
            helper.make_node("Add", [product, f"{offset}/4d"], list(node.output)),
        ]
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph)
    return count


def cpu_ms_per_inference(session: ort.InferenceSession, batch: np.ndarray, repeats: int) -> float:
    session.run(None, {INPUT_NAME: batch})
    before = process_cpu_seconds()
    for _ in range(repeats):
        session.run(None, {INPUT_NAME: batch})
    return (process_cpu_seconds() - before) * 1000.0 / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.batchnorm_layout", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model-dir", type=Path, default=Path("models/chexnet-densenet121"))
    parser.add_argument("--onnx-dir", type=Path, default=Path("build"))
    parser.add_argument("--image", type=Path, default=Path("tests/fixtures/00000001_000.png"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    card = load_model_card(args.model_dir)
    exported = onnx.load(str(args.onnx_dir / load_manifest(args.onnx_dir).onnx_file))
    plain = onnx.ModelProto()
    plain.CopyFrom(exported)
    pairs = as_scale_and_shift(plain)
    pixels = decode_image(args.image.read_bytes()).pixels
    batch = preprocess_pixels(pixels, card.input_size, card.normalisation.mean, card.normalisation.std)[None]
    for threads in (1, 2):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = {
            name: ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
            for name, proto in (("exported", exported), ("Mul + Add", plain))
        }
        outputs = [session.run(None, {INPUT_NAME: batch})[0] for session in sessions.values()]
        ratios: list[float] = []
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for index in range(args.rounds):
            order = list(sessions) if index % 2 == 0 else list(reversed(sessions))
            measured = {name: cpu_ms_per_inference(sessions[name], batch, args.repeats) for name in order}
            for name, value in measured.items():
                times[name].append(value)
            ratios.append(measured["Mul + Add"] / measured["exported"])
        print(
            f"{threads} thread(s), {pairs} pairs: exported {statistics.median(times['exported']):.1f} ms, "
            f"Mul + Add {statistics.median(times['Mul + Add']):.1f} ms CPU per inference; "
            f"Mul + Add / exported {statistics.median(ratios):.2f} "
            f"(range {min(ratios):.2f}-{max(ratios):.2f}); "
            f"max |dp| {np.abs(outputs[0] - outputs[1]).max():.1g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
