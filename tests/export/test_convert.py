"""export.convert: graph interface (names, shapes, dynamic batch) and refusals."""

from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from cxr.model_card import load_model_card, save_model_card
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, ONNX_FILE, PROBABILITIES_OUTPUT
from export.convert import (
    BATCH_AXIS,
    ConversionError,
    _rename_tensor,
    build_export_model,
    check_interface,
    load_keras_model,
    name_batch_axis,
    rename_outputs,
    renumber_generated_names,
)

INPUT_SIZE = 64  # of the tiny model in conftest.py: a (2, 2, 1024) feature map


def small_graph(output_names: tuple[str, str]) -> onnx.ModelProto:
    """input -> Relu -> first output, and -> Sigmoid -> second output, tf2onnx-style names."""
    nodes = [
        helper.make_node("Relu", [INPUT_NAME], [output_names[0]]),
        helper.make_node("Sigmoid", [output_names[0]], [output_names[1]]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["unk__1", 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["unk__2", 4]) for name in output_names],
    )
    return helper.make_model(graph)


def test_rename_outputs_rewires_consumers_and_outputs() -> None:
    proto = small_graph(("model/relu/Relu:0", "Identity:0"))

    rename_outputs(proto, ("first", "second"))

    assert [output.name for output in proto.graph.output] == ["first", "second"]
    assert list(proto.graph.node[1].input) == ["first"]  # the consumer follows the rename
    onnx.checker.check_model(proto)


def test_rename_outputs_refuses_a_name_already_taken() -> None:
    proto = small_graph(("a", "b"))

    with pytest.raises(ConversionError, match="already has a tensor"):
        rename_outputs(proto, ("b", "c"))


def test_name_batch_axis_names_the_first_dimension_everywhere() -> None:
    proto = small_graph(("a", "b"))

    name_batch_axis(proto, BATCH_AXIS)

    for info in (*proto.graph.input, *proto.graph.output):
        assert info.type.tensor_type.shape.dim[0].dim_param == BATCH_AXIS


def test_check_interface_refuses_unexpected_names() -> None:
    proto = small_graph(("a", "b"))
    name_batch_axis(proto, BATCH_AXIS)

    with pytest.raises(ConversionError, match="expected"):
        check_interface(proto, INPUT_SIZE, (2, 2, 1024))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_interface_has_named_outputs_and_a_dynamic_batch(exported: Path, batch: int) -> None:
    session = ort.InferenceSession(str(exported / ONNX_FILE), providers=["CPUExecutionProvider"])
    inputs = np.zeros((batch, INPUT_SIZE, INPUT_SIZE, 3), dtype=np.float32)

    probabilities, feature_map = session.run(None, {INPUT_NAME: inputs})

    assert [node.name for node in session.get_inputs()] == [INPUT_NAME]
    assert [node.name for node in session.get_outputs()] == [PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT]
    assert probabilities.shape == (batch, 14)
    assert feature_map.shape == (batch, 2, 2, 1024)


@pytest.mark.slow
def test_export_model_refuses_an_unknown_feature_layer(tiny_model: keras.Model) -> None:
    with pytest.raises(ConversionError, match="no layer 'conv6'"):
        build_export_model(tiny_model, "conv6")


@pytest.mark.slow
def test_load_refuses_a_card_with_another_input_size(model_copy: Path) -> None:
    card = load_model_card(model_copy)
    save_model_card(card.model_copy(update={"input_size": 96}), model_copy)

    with pytest.raises(ConversionError, match="model card says"):
        load_keras_model(load_model_card(model_copy), model_copy)


def test_names_tf2onnx_generated_are_numbered_in_graph_order() -> None:
    proto = small_graph(("a", "b"))
    proto.graph.node[0].name, proto.graph.node[1].name = "model/relu/Relu", "Sigmoid__1459"
    _rename_tensor(proto.graph, "a", "relu__1582:0")  # a tensor, in the node and the graph output

    renumber_generated_names(proto)

    assert [node.name for node in proto.graph.node] == ["model/relu/Relu", "Sigmoid__3"]
    assert list(proto.graph.node[0].output) == list(proto.graph.node[1].input) == ["relu__2:0"]
    assert proto.graph.output[0].name == "relu__2:0"
    onnx.checker.check_model(proto)
