"""What the INT8 binding tests share: a small conv/relu model, batches, a
list-backed kiln.Calibrator, onnxruntime activations and error measures."""
import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SHAPE = (2, 3, 8, 8)

# INT8 against FP32: relative L2 error ||int8 - fp32|| / ||fp32|| of the
# network output. Per-tensor 8-bit activations over a max|x| range have a
# step of max|x|/127 and a rounding noise of step/sqrt(12), about 1% of the
# RMS of these Gaussian-like tensors; per-channel int8 weights add less, and
# the three quantized layers here measure 0.016-0.018 (minmax, entropy,
# percentile). 0.05 is about three times that, so other data stays under it,
# while real faults go over: scales half as large as they should be (the
# activations clip) give 0.13, a dropped bias or a layout mix-up far more.
# The scales themselves are checked exactly by the calibration tests.
INT8_BOUND = 0.05


# ---- models and batches -------------------------------------------------------------


def dyadic(rng, shape, denominator, limit):
    """Multiples of 1/denominator in [-limit, limit]: every sum of products of
    them is exact in float32, so kiln and onnxruntime see bit-equal tensors."""
    return (rng.integers(-limit * denominator, limit * denominator + 1, size=shape) / denominator).astype(np.float32)


def conv_relu_model(path, exact, seed=5):
    """x[2,3,8,8] -> Conv3x3+Relu (r1) -> Conv3x3+Relu (r2) -> Conv1x1 (y).
    exact: dyadic weights (bit-exact activations); else Gaussian ones."""
    rng = np.random.default_rng(seed)
    inits = {}
    for w, shape in (("w1", (8, 3, 3, 3)), ("w2", (8, 8, 3, 3)), ("w3", (4, 8, 1, 1))):
        if exact:
            inits[w] = dyadic(rng, shape, 4, 1)
            inits[w + "_b"] = dyadic(rng, shape[:1], 4, 1)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            inits[w] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
            inits[w + "_b"] = (rng.standard_normal(shape[:1]) * 0.1).astype(np.float32)
    conv = lambda name, x, w, y, pad: helper.make_node("Conv", [x, w, w + "_b"], [y], name=name, pads=[pad] * 4)
    nodes = [
        conv("conv1", "x", "w1", "c1", 1), helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        conv("conv2", "r1", "w2", "c2", 1), helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        conv("conv3", "r2", "w3", "y", 0),
    ]
    graph = helper.make_graph(nodes, "conv_relu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 4, 8, 8))],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def make_batches(n, exact, seed=11):
    rng = np.random.default_rng(seed)
    if exact:
        return [dyadic(rng, SHAPE, 8, 4) for _ in range(n)]
    return [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(n)]


class ListCalibrator(kiln.Calibrator):
    """Hands out a list of arrays as batches of input 'x'."""

    def __init__(self, arrays, name="x", can_rewind=True):
        super().__init__()
        self.arrays, self.name, self.can_rewind = list(arrays), name, can_rewind
        self.given = self.rewinds = 0

    def next_batch(self):
        if self.given == len(self.arrays):
            return None
        self.given += 1
        return {self.name: self.arrays[self.given - 1]}

    def batch_count(self):
        return len(self.arrays)

    def rewind(self):
        if not self.can_rewind:
            return False
        self.given = 0
        self.rewinds += 1
        return True


def ort_activations(model_path, arrays):
    """Every tensor of the model (inputs, intermediates, outputs) -> all its
    values over the batches, from onnxruntime with each intermediate exposed
    as a graph output."""
    m = onnx.shape_inference.infer_shapes(onnx.load(model_path))
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(vi for vi in m.graph.value_info if vi.name not in have)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = {}
    for x in arrays:
        for n, v in [("x", x)] + list(zip(names, sess.run(names, {"x": x}))):
            values.setdefault(n, []).append(np.asarray(v).ravel())
    return {n: np.concatenate(v) for n, v in values.items()}


def rel_l2(got, ref):
    ref = ref.astype(np.float64)
    return float(np.linalg.norm(got.astype(np.float64) - ref) / np.linalg.norm(ref))


def run_plan(plan, x):
    return kiln.Runtime().deserialize(plan).create_context().run({"x": x})["y"]


def int8_layers(plan):
    return [l.name for l in kiln.Runtime().deserialize(plan).summary().layers if l.precision == "int8"]
