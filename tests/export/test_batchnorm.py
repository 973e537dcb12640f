"""export.batchnorm: Mul -> Add by per-channel constants becomes one BatchNormalization, and a
BatchNormalization a depthwise convolution (for the quantiser), with the same outputs."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cxr.onnx_manifest import ONNX_FILE
from export.batchnorm import batch_normalization_as_depthwise, restore_batch_normalization

CHANNELS = 8


def scale_shift_graph(scale_shape: tuple[int, ...], product_also_output: bool = False) -> onnx.ModelProto:
    """x (N, 8, 5, 5) -> Mul(scale) -> Add(offset) -> Relu -> y, as tf2onnx writes a Keras BN."""
    rng = np.random.default_rng(0)
    constants = [
        numpy_helper.from_array(rng.normal(size=scale_shape).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.normal(size=scale_shape).astype(np.float32), "offset"),
    ]
    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["scaled"], name="bn/mul"),
        helper.make_node("Add", ["offset", "scaled"], ["shifted"], name="bn/add"),  # constant first
        helper.make_node("Relu", ["shifted"], ["y"], name="relu"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CHANNELS, 5, 5])]
    if product_also_output:
        outputs.append(helper.make_tensor_value_info("scaled", TensorProto.FLOAT, ["n", CHANNELS, 5, 5]))
    graph = helper.make_graph(
        nodes,
        "scale_shift",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CHANNELS, 5, 5])],
        outputs,
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(proto: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize("scale_shape", [(1, CHANNELS, 1, 1), (CHANNELS, 1, 1)])
def test_a_scale_and_shift_becomes_one_batch_normalization_with_the_same_outputs(
    scale_shape: tuple[int, ...],
) -> None:
    proto = scale_shift_graph(scale_shape)
    x = np.random.default_rng(1).normal(size=(2, CHANNELS, 5, 5)).astype(np.float32)
    before = run(proto, x)

    assert restore_batch_normalization(proto) == 1

    onnx.checker.check_model(proto)
    assert [node.op_type for node in proto.graph.node] == ["BatchNormalization", "Relu"]
    assert {tensor.name for tensor in proto.graph.initializer}.isdisjoint({"scale", "offset"})  # unused now
    np.testing.assert_allclose(run(proto, x)[0], before[0], rtol=0, atol=1e-6)


def test_a_product_needed_on_its_own_keeps_its_add() -> None:
    proto = scale_shift_graph((1, CHANNELS, 1, 1), product_also_output=True)
    x = np.random.default_rng(1).normal(size=(2, CHANNELS, 5, 5)).astype(np.float32)
    before = run(proto, x)

    assert restore_batch_normalization(proto) == 1

    assert [node.op_type for node in proto.graph.node] == ["BatchNormalization", "Add", "Relu"]
    for after, expected in zip(run(proto, x), before, strict=True):
        np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)


def test_a_factor_that_is_not_per_channel_is_left_as_it_is() -> None:
    proto = scale_shift_graph((1, 1, 1, 5))  # one factor per column
    original = proto.SerializeToString()

    assert restore_batch_normalization(proto) == 0
    assert proto.SerializeToString() == original


def batch_normalization_graph(epsilon: float) -> onnx.ModelProto:
    """x (N, 8, 5, 5) -> BatchNormalization (any mean and variance) -> Relu -> y."""
    rng = np.random.default_rng(2)
    values = {
        "scale": rng.normal(size=CHANNELS),
        "offset": rng.normal(size=CHANNELS),
        "mean": rng.normal(size=CHANNELS),
        "var": rng.uniform(0.5, 2.0, size=CHANNELS),
    }
    graph = helper.make_graph(
        [
            helper.make_node("BatchNormalization", ["x", *values], ["normal"], name="bn", epsilon=epsilon),
            helper.make_node("Relu", ["normal"], ["y"], name="relu"),
        ],
        "batch_normalization",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CHANNELS, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CHANNELS, 5, 5])],
        [numpy_helper.from_array(value.astype(np.float32), name) for name, value in values.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_a_batch_normalization_becomes_a_depthwise_convolution_with_the_same_outputs(epsilon: float) -> None:
    proto = batch_normalization_graph(epsilon)
    x = np.random.default_rng(3).normal(size=(2, CHANNELS, 5, 5)).astype(np.float32)
    before = run(proto, x)

    assert batch_normalization_as_depthwise(proto) == 1

    onnx.checker.check_model(proto)
    (conv, relu) = proto.graph.node
    assert (conv.op_type, relu.op_type) == ("Conv", "Relu")
    assert helper.get_attribute_value(next(a for a in conv.attribute if a.name == "group")) == CHANNELS
    assert len(proto.graph.initializer) == 2  # weight and bias; the four statistics are gone
    np.testing.assert_allclose(run(proto, x)[0], before[0], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_exported_densenet_has_no_scale_and_shift_pairs_left(exported: Path) -> None:
    proto = onnx.load(str(exported / ONNX_FILE))
    ops = Counter(node.op_type for node in proto.graph.node)

    # One before each of DenseNet121's 58 dense layers, 3 transitions and the last (random weights:
    # tf2onnx drops their Add of zeros, so each is a lone Mul).
    assert ops["BatchNormalization"] == 62
    assert ops["Mul"] == 0
