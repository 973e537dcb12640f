"""Give the converted graph its batch normalisations back, so onnxruntime keeps its fast layout.

Keras 3 runs an inference-mode BatchNormalization as `x * scale + offset`, and tf2onnx writes that
as a Mul and an Add by per-channel constants (62 pairs in DenseNet121, one before every
ReLU -> convolution). onnxruntime's x86 convolutions run in a blocked channel layout (NCHWc) that
takes no broadcast Add: around each pair it reorders the tensor back to plain NCHW and the ReLU's
output into NCHWc again, about a fifth of DenseNet121's inference time at 224 px (README,
Performance). As one BatchNormalization (mean 0, variance 1, epsilon 0: the same products and
sums) the pair becomes a depthwise convolution inside the blocked layout, with the ReLU fused.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference


def restore_batch_normalization(proto: onnx.ModelProto) -> int:
    """Replace each Mul by per-channel constants of an (N, C, H, W) tensor, with the Add of
    per-channel constants that may follow it, by one BatchNormalization; return how many.
    Constants of another shape are left as they are (tf2onnx drops an Add of zeros)."""
    graph = proto.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    outputs = {output.name for output in graph.output}
    channels = _channel_counts(proto)

    replacements: dict[int, onnx.NodeProto | None] = {}  # node index -> new node (None: dropped)
    for index, mul in enumerate(graph.node):
        scaled = _per_channel_operand(mul, "Mul", constants, channels)
        if scaled is None:
            continue
        tensor, scale = scaled
        last, offset = index, np.zeros_like(scale)
        users = consumers.get(mul.output[0], [])
        if len(users) == 1 and mul.output[0] not in outputs:
            shifted = _per_channel_operand(graph.node[users[0]], "Add", constants, channels)
            if shifted is not None:
                last, offset = users[0], shifted[1]
        prefix = f"{graph.node[last].output[0]}/batch_normalization"
        arrays = {"scale": scale, "offset": offset, "mean": np.zeros_like(scale), "var": np.ones_like(scale)}
        graph.initializer.extend(
            numpy_helper.from_array(value, f"{prefix}/{key}") for key, value in arrays.items()
        )
        replacements[index] = None
        replacements[last] = helper.make_node(
            "BatchNormalization",
            [tensor, *(f"{prefix}/{key}" for key in arrays)],
            list(graph.node[last].output),
            name=prefix,
            epsilon=0.0,
        )
    if not replacements:
        return 0
    nodes = [replacements.get(index, node) for index, node in enumerate(graph.node)]
    del graph.node[:]
    graph.node.extend(node for node in nodes if node is not None)
    drop_unused_initializers(graph)
    return sum(node is not None for node in replacements.values())


def batch_normalization_as_depthwise(proto: onnx.ModelProto) -> int:
    """Replace each BatchNormalization of a constant (C,) scale, offset, mean and variance by the
    1x1 depthwise convolution that computes the same (weight scale / sqrt(var + eps), bias offset -
    mean * weight); return how many.

    For the int8 model only: onnxruntime's quantiser turns a convolution into an integer one, with
    the ReLU after it fused, but leaves a BatchNormalization in float between a DequantizeLinear and
    a QuantizeLinear, with transposes out of the integer kernels' channels-last layout and back. In
    DenseNet121 that is 62 times per inference (README, Performance)."""
    graph = proto.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    nodes, count = [], 0
    for node in graph.node:
        parameters = [constants.get(name) for name in node.input[1:]]
        if (
            node.op_type != "BatchNormalization"
            or len(parameters) != 4
            or any(value is None or value.ndim != 1 for value in parameters)
        ):
            nodes.append(node)
            continue
        scale, offset, mean, variance = (np.asarray(value, np.float64) for value in parameters)
        epsilon = next((attribute.f for attribute in node.attribute if attribute.name == "epsilon"), 1e-5)
        weight = scale / np.sqrt(variance + epsilon)
        prefix = f"{node.output[0]}/depthwise"
        graph.initializer.extend(
            [
                numpy_helper.from_array(weight.reshape(-1, 1, 1, 1).astype(np.float32), f"{prefix}/weight"),
                numpy_helper.from_array((offset - mean * weight).astype(np.float32), f"{prefix}/bias"),
            ]
        )
        nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], f"{prefix}/weight", f"{prefix}/bias"],
                list(node.output),
                name=prefix,
                group=len(weight),
                kernel_shape=[1, 1],
            )
        )
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    drop_unused_initializers(graph)
    return count


def _channel_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> C for every tensor that shape inference knows to be (N, C, H, W)."""
    inferred = shape_inference.infer_shapes(proto).graph
    counts = {}
    for info in (*inferred.input, *inferred.value_info, *inferred.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            counts[info.name] = dims[1].dim_value
    return counts


def _per_channel_operand(
    node: onnx.NodeProto, op_type: str, constants: dict[str, onnx.TensorProto], channels: dict[str, int]
) -> tuple[str, np.ndarray] | None:
    """(tensor, values) when `node` is tensor (N, C, H, W) `op_type` a float32 constant of shape
    (1, C, 1, 1) or (C, 1, 1), in either order; the values as a (C,) array."""
    if node.op_type != op_type or len(node.input) != 2:
        return None
    variable = [name for name in node.input if name not in constants]
    constant = [name for name in node.input if name in constants]
    if len(variable) != 1 or len(constant) != 1 or variable[0] not in channels:
        return None
    count, values = channels[variable[0]], numpy_helper.to_array(constants[constant[0]])
    if values.dtype != np.float32 or values.shape not in ((1, count, 1, 1), (count, 1, 1)):
        return None
    return variable[0], values.reshape(count)


def drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
