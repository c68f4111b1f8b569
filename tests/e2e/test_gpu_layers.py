"""Small graphs on the GPU against kiln's CPU engine: one layer kind at a time,
then short chains, so a whole-model mismatch can be traced to a layer kind.
Skipped where no CUDA device is visible."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import rel_error, run_kiln_model
from test_gpu_vs_cpu import gpu_present

pytestmark = pytest.mark.skipif(not gpu_present(), reason="no CUDA device")
R = np.random.default_rng(3)


def w(name, *shape):
    return numpy_helper.from_array((R.standard_normal(shape) * 0.2).astype(np.float32), name)


def graph(nodes, inits, x_shape, y="y"):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def conv(x, y, wname, pads=1, group=1, strides=1, bias=None):
    ins = [x, wname] + ([bias] if bias else [])
    return helper.make_node("Conv", ins, [y], pads=[pads] * 4, group=group, strides=[strides] * 2)


CASES = {
    "relu": lambda: graph([helper.make_node("Relu", ["x"], ["y"])], [], [2, 8, 6, 6]),
    "conv": lambda: graph([conv("x", "y", "w", bias="b")], [w("w", 16, 8, 3, 3), w("b", 16)], [2, 8, 10, 10]),
    "conv_relu": lambda: graph([conv("x", "c", "w", bias="b"), helper.make_node("Relu", ["c"], ["y"])],
                               [w("w", 16, 8, 3, 3), w("b", 16)], [1, 8, 10, 10]),
    "conv_conv": lambda: graph([conv("x", "c", "w1"), conv("c", "y", "w2")],
                               [w("w1", 16, 8, 3, 3), w("w2", 8, 16, 1, 1)], [1, 8, 10, 10]),
    "residual": lambda: graph([conv("x", "c", "w1"), helper.make_node("Add", ["c", "x"], ["a"]),
                               helper.make_node("Relu", ["a"], ["y"])], [w("w1", 8, 8, 3, 3)], [1, 8, 10, 10]),
    "depthwise": lambda: graph([conv("x", "y", "w", group=16, strides=2, bias="b")],
                               [w("w", 16, 1, 3, 3), w("b", 16)], [1, 16, 11, 11]),
    "maxpool": lambda: graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                               pads=[1, 1, 1, 1])], [], [1, 8, 10, 10]),
    "gap_gemm": lambda: graph([helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                               helper.make_node("Flatten", ["p"], ["f"]),
                               helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)],
                              [w("w", 5, 8), w("b", 5)], [2, 8, 6, 6]),
    "head": lambda: graph([conv("x", "c", "w"),
                           helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
                           helper.make_node("Reshape", ["t", "s"], ["y"])],
                          [w("w", 12, 8, 3, 3), numpy_helper.from_array(np.array([1, -1, 4], np.int64), "s")],
                          [1, 8, 5, 5]),
}


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", list(CASES))
def test_layer_matches_cpu(case, fp16, tmp_path):
    model = CASES[case]()
    path = tmp_path / f"{case}.onnx"
    onnx.save(model, str(path))
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = R.standard_normal(shape).astype(np.float32)
    ref = run_kiln_model(path, {"x": x}, tmp_path / "cpu")
    got = run_kiln_model(path, {"x": x}, tmp_path / "gpu", extra_build=("--device", "cuda") + (("--fp16",) if fp16 else ()))
    err = rel_error(got["y"], ref["y"])
    assert err <= (1e-2 if fp16 else 1e-4), f"{case}: relative error {err:.3g}"
