"""Keras model -> ONNX graph with the two named outputs the API reads (tf2onnx)."""

import logging
import re
from pathlib import Path

import keras
import onnx
import tensorflow as tf
import tf2onnx

from cxr.labels import LABELS
from cxr.model_card import ModelCard, verify_weights
from cxr.onnx_manifest import FEATURE_MAP_OUTPUT, INPUT_NAME, PROBABILITIES_OUTPUT
from export.batchnorm import restore_batch_normalization

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # the newest opset tf2onnx 1.17 maps to an IR version is 18; 17 is widely served
OUTPUT_NAMES = (PROBABILITIES_OUTPUT, FEATURE_MAP_OUTPUT)  # order of the Keras export model's outputs
BATCH_AXIS = "batch"
_GENERATED_NAME = re.compile(r"(.*?)__\d+(:\d+)?")  # tf2onnx's names: Transpose__1459, const__9:0


class ConversionError(RuntimeError):
    """The Keras model or the converted graph does not have the interface the API expects."""


def load_keras_model(card: ModelCard, model_dir: str | Path) -> keras.Model:
    """The card's weights, after checking their sha256 (ModelCardMismatchError otherwise)."""
    weights = verify_weights(card, model_dir)
    model = keras.models.load_model(weights, compile=False)
    expected = (None, card.input_size, card.input_size, 3)
    if tuple(model.input_shape) != expected:
        raise ConversionError(f"{weights} takes inputs {model.input_shape}, the model card says {expected}")
    return model


def build_export_model(model: keras.Model, last_conv_layer: str) -> keras.Model:
    """Same layers and weights, two outputs: probabilities (N, 14) and the feature map (N, h, w, C).

    Identity layers carry the output names so that tf2onnx, which names graph outputs after the
    producing Keras layers, already emits the manifest's names.
    """
    if len(model.outputs) != 1:
        raise ConversionError(f"expected a single-output classifier, {model.name} has {len(model.outputs)}")
    try:
        feature_map = model.get_layer(last_conv_layer).output
    except ValueError as error:
        raise ConversionError(
            f"{model.name} has no layer {last_conv_layer!r} (card last_conv_layer)"
        ) from error
    if len(feature_map.shape) != 4:
        raise ConversionError(f"layer {last_conv_layer!r} outputs {feature_map.shape}, not (N, h, w, C)")
    outputs = [
        keras.layers.Identity(name=PROBABILITIES_OUTPUT)(model.outputs[0]),
        keras.layers.Identity(name=FEATURE_MAP_OUTPUT)(feature_map),
    ]
    return keras.Model(model.input, outputs, name=f"{model.name}_export")


def convert_to_onnx(
    export_model: keras.Model, input_size: int, opset: int = DEFAULT_OPSET
) -> onnx.ModelProto:
    """tf2onnx conversion with a dynamic batch axis; outputs renamed, batch normalisations restored
    (export/batchnorm.py), checked."""
    # Keras 3 models only convert with an explicit signature: tf2onnx cannot derive one itself.
    signature = [tf.TensorSpec((None, input_size, input_size, 3), tf.float32, name=INPUT_NAME)]
    logger.info("converting %s (%d px) with tf2onnx at opset %d", export_model.name, input_size, opset)
    proto, _ = tf2onnx.convert.from_keras(export_model, input_signature=signature, opset=opset)
    rename_outputs(proto, OUTPUT_NAMES)
    name_batch_axis(proto, BATCH_AXIS)
    logger.info("%d scale-and-shift pairs written as BatchNormalization", restore_batch_normalization(proto))
    renumber_generated_names(proto)
    onnx.checker.check_model(proto)
    check_interface(proto, input_size, feature_map_shape(export_model))
    return proto


def renumber_generated_names(proto: onnx.ModelProto) -> None:
    """Number the nodes and tensors tf2onnx created in graph order (Transpose__7, const_axes__8:0).

    tf2onnx numbers them from a process-wide counter, so two exports of the same weights differed
    in those names alone; now the same weights and package versions give the same file and sha256.
    """
    graph = proto.graph
    numbers: dict[str, str] = {}

    def renamed(name: str) -> str:
        if name not in numbers:
            generated = _GENERATED_NAME.fullmatch(name)
            numbers[name] = f"{generated[1]}__{len(numbers)}{generated[2] or ''}" if generated else name
        return numbers[name]

    for node in graph.node:
        node.name = renamed(node.name)
        for names in (node.input, node.output):
            names[:] = [renamed(name) for name in names]
    for tensor in graph.initializer:
        tensor.name = renamed(tensor.name)
    for info in (*graph.input, *graph.value_info, *graph.output):
        info.name = renamed(info.name)


def feature_map_shape(export_model: keras.Model) -> tuple[int, int, int]:
    height, width, channels = export_model.outputs[1].shape[1:]
    return int(height), int(width), int(channels)


def rename_outputs(proto: onnx.ModelProto, names: tuple[str, ...]) -> None:
    """Give the graph outputs `names`, in order, wherever tf2onnx chose other names."""
    graph = proto.graph
    if len(graph.output) != len(names):
        raise ConversionError(f"converted graph has {len(graph.output)} outputs, expected {len(names)}")
    for output, name in zip(graph.output, names, strict=True):
        if output.name != name:
            logger.info("renaming ONNX output %s -> %s", output.name, name)
            _rename_tensor(graph, output.name, name)


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    if new in taken:
        raise ConversionError(f"cannot rename {old} to {new}: the graph already has a tensor {new}")
    for node in graph.node:
        for names in (node.input, node.output):
            for index, name in enumerate(names):
                if name == old:
                    names[index] = new
    for info in (*graph.output, *graph.value_info):
        if info.name == old:
            info.name = new


def name_batch_axis(proto: onnx.ModelProto, name: str) -> None:
    """One symbolic batch dimension shared by input and outputs (tf2onnx leaves unk__N names)."""
    for info in (*proto.graph.input, *proto.graph.output):
        info.type.tensor_type.shape.dim[0].dim_param = name


def check_interface(proto: onnx.ModelProto, input_size: int, feature_shape: tuple[int, int, int]) -> None:
    """Input and output names and static shapes as cxr/onnx_manifest.py promises them."""
    expected = {
        INPUT_NAME: [BATCH_AXIS, input_size, input_size, 3],
        PROBABILITIES_OUTPUT: [BATCH_AXIS, len(LABELS)],
        FEATURE_MAP_OUTPUT: [BATCH_AXIS, *feature_shape],
    }
    actual = {info.name: _dims(info) for info in (*proto.graph.input, *proto.graph.output)}
    if list(actual) != list(expected):
        raise ConversionError(f"ONNX tensors are {list(actual)}, expected {list(expected)}")
    for name, dims in expected.items():
        if actual[name] != dims:
            raise ConversionError(f"ONNX tensor {name} has shape {actual[name]}, expected {dims}")


def _dims(info: onnx.ValueInfoProto) -> list[int | str]:
    return [dim.dim_param or dim.dim_value for dim in info.type.tensor_type.shape.dim]
