"""bench.batchnorm_layout: the exported BatchNormalizations written back as Mul -> Add, same outputs."""

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bench.batchnorm_layout import as_scale_and_shift
from export.batchnorm import restore_batch_normalization


def test_the_scale_and_shift_form_gives_the_outputs_of_the_exported_form() -> None:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "offset"], ["y"]),
        ],
        "bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 3, 3])],
        [
            numpy_helper.from_array(rng.normal(size=(1, 4, 1, 1)).astype(np.float32), name)
            for name in ("scale", "offset")
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert restore_batch_normalization(proto) == 1
    x = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    exported = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    assert as_scale_and_shift(proto) == 1

    assert [node.op_type for node in proto.graph.node] == ["Mul", "Add"]
    plain = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(plain.run(None, {"x": x})[0], exported.run(None, {"x": x})[0], atol=1e-6)
