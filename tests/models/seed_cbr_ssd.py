"""The seed model: three Conv -> BatchNormalization -> Relu chains feeding an
SSD-style head (per-location box and class convs, reshaped and concatenated
over two feature maps). BatchNorm statistics are random, so folding is not
trivial.  python3 tests/models/seed_cbr_ssd.py OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NUM_CLASSES = 5
ANCHORS = 4


def build(seed=0, hw=128):
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv(x, name, cin, cout, k=3, stride=1, bias=True):
        w = const(name + ".weight", (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32))
        ins = [x, w]
        if bias:
            ins.append(const(name + ".bias", (rng.standard_normal(cout) * 0.1).astype(np.float32)))
        nodes.append(helper.make_node("Conv", ins, [name], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        return name

    def cbr(x, idx, cin, cout):
        c = conv(x, f"conv{idx}", cin, cout, stride=2, bias=False)
        bn = f"bn{idx}"
        nodes.append(helper.make_node(
            "BatchNormalization",
            [c, const(bn + ".scale", (rng.random(cout) + 0.5).astype(np.float32)),
             const(bn + ".bias", (rng.standard_normal(cout) * 0.1).astype(np.float32)),
             const(bn + ".mean", (rng.standard_normal(cout) * 0.1).astype(np.float32)),
             const(bn + ".var", (rng.random(cout) + 0.5).astype(np.float32))],
            [bn], name=bn, epsilon=1e-5))
        nodes.append(helper.make_node("Relu", [bn], [f"relu{idx}"], name=f"relu{idx}"))
        return f"relu{idx}"

    f1 = cbr("images", 1, 3, 16)
    f2 = cbr(f1, 2, 16, 32)
    f3 = cbr(f2, 3, 32, 64)
    boxes, scores = [], []
    for level, (feat, ch) in enumerate([(f2, 32), (f3, 64)]):
        for kind, per in (("box", 4), ("cls", NUM_CLASSES)):
            y = conv(feat, f"head{level}.{kind}", ch, ANCHORS * per)
            t = f"head{level}.{kind}.nhwc"
            nodes.append(helper.make_node("Transpose", [y], [t], name=t, perm=[0, 2, 3, 1]))
            r = f"head{level}.{kind}.flat"
            shape = const(r + ".shape", np.array([0, -1, per], dtype=np.int64))
            nodes.append(helper.make_node("Reshape", [t, shape], [r], name=r))
            (boxes if kind == "box" else scores).append(r)
    nodes.append(helper.make_node("Concat", boxes, ["bbox_regression"], name="concat_boxes", axis=1))
    nodes.append(helper.make_node("Concat", scores, ["cls_logits"], name="concat_scores", axis=1))
    graph = helper.make_graph(
        nodes, "seed_cbr_ssd",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, hw, hw])],
        [helper.make_tensor_value_info("bbox_regression", TensorProto.FLOAT, ["N", None, 4]),
         helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, ["N", None, NUM_CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kiln-tests")
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    onnx.save(build(), sys.argv[1] if len(sys.argv) > 1 else "seed_cbr_ssd.onnx")
