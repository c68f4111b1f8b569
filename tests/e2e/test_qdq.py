"""Explicit quantization through the CLI, checked against onnxruntime.

Export: `kiln calibrate M.onnx --calib DIR --calib-method minmax -o M.qdq.onnx`
on a small Conv+Relu+Conv+Add+Gemm model. Oracles: activation scales
max|x|/127 computed with numpy from onnxruntime's activations, weight scales
max|w_k|/127 from the weights, onnx.checker, and onnxruntime running the Q/DQ
model.

Import: kiln builds Q/DQ models (its own and onnxruntime's quantize_static
output), folds the int8 zero-point-0 pairs (visible in `kiln inspect`) and
runs the rest as real QuantizeLinear/DequantizeLinear ops.
"""
import json
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from conftest import kiln, one_line_error, rel_error, run_kiln_model

# Three 8-bit activations and three 8-bit weights between input and output:
# each rounding adds up to half a step (1/254 of the tensor's range), and the
# errors add through the layers. Measured: 1.2-3.6% of the output's range
# (onnxruntime's Q/DQ run against FP32). 8% leaves margin; a wrong scale
# (another tensor's, clipping; or 127x off, rounding all to 0) is far outside.
QDQ_TOL = 0.08
# kiln's FP32 kernels against onnxruntime's on the same float math.
FLOAT_TOL = 1e-4


def small_model(seed=0):
    rng = np.random.default_rng(seed)

    def w(name, *shape, s=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)

    inits = [w("W1", 8, 3, 3, 3), w("B1", 8, s=0.1), w("W2", 8, 8, 3, 3, s=0.15), w("B2", 8, s=0.1),
             w("W3", 10, 8 * 8 * 8, s=0.05), w("B3", 10, s=0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3", "B3"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "qdq_e2e", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TP.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8  # the GPU machine's onnxruntime caps the IR version
    onnx.checker.check_model(m)
    return m


def calib_batches(n=4, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 8, 8)).astype(np.float32) for _ in range(n)]


def ort_run(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def ort_activations(model, batches):
    """Every node output of `model` on every batch, from onnxruntime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    names = [o for n in m.graph.node for o in n.output]
    del m.graph.output[:]
    m.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in ["x", *names])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [dict(zip(["x", *names], sess.run(None, {"x": b}))) for b in batches]
    return {n: [r[n] for r in runs] for n in ["x", *names]}


def inits(model):
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def producer(model, name):
    return next((n for n in model.graph.node if name in n.output), None)


def activation_pairs(model):
    """{source tensor: (QuantizeLinear, DequantizeLinear)} of the activation pairs."""
    pairs = {}
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear":
            continue
        dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        assert len(dqs) == 1
        pairs[q.input[0]] = (q, dqs[0])
    return pairs


def float_bits(x):
    return struct.unpack("<I", struct.pack("<f", float(x)))[0]


def without_activation_pairs(model):
    """The Q/DQ model with every activation pair removed (weights stay dequantized):
    what kiln computes after fold_qdq, written as a float model for onnxruntime."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    pairs = activation_pairs(m)
    to_source = {dq.output[0]: src for src, (q, dq) in pairs.items()}
    drop = {id(n) for q, dq in pairs.values() for n in (q, dq)}
    keep = [n for n in m.graph.node if id(n) not in drop]
    for n in keep:
        for k, i in enumerate(n.input):
            if i in to_source:
                n.input[k] = to_source[i]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    used = {i for n in keep for i in n.input}
    live = [t for t in m.graph.initializer if t.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(live)
    return m


@pytest.fixture
def exported(tmp_path):
    model = small_model()
    src = tmp_path / "m.onnx"
    onnx.save(model, str(src))
    batches = calib_batches()
    (tmp_path / "calib").mkdir()
    for k, b in enumerate(batches):
        np.save(tmp_path / "calib" / f"b{k}.npy", b)
    out = tmp_path / "m.qdq.onnx"
    r = kiln("calibrate", src, "--calib", tmp_path / "calib", "--calib-method", "minmax", "-o", out)
    assert str(out) in r.stdout
    return model, onnx.load(str(out)), batches, out


def test_export_places_pairs_with_onnxruntime_scales(exported):
    model, qdq, batches, _ = exported
    onnx.checker.check_model(qdq, full_check=True)
    acts = ort_activations(model, batches)
    pairs = activation_pairs(qdq)
    # Conv inputs x and r1 (r1 also feeds the residual Add: one shared pair),
    # and the Gemm input f. c2 has no scale of its own: kiln fuses it into the Add.
    assert set(pairs) == {"x", "r1", "f"}
    by_name = {n.name: n for n in qdq.graph.node}
    assert by_name["conv2"].input[0] == by_name["add"].input[1] == pairs["r1"][1].output[0]
    assert by_name["add"].input[0] == "c2"
    values = inits(qdq)
    for src, (q, dq) in pairs.items():
        assert q.input[1] == dq.input[1] and q.input[2] == dq.input[2]
        scale, zp = values[q.input[1]], values[q.input[2]]
        assert scale.shape == () and zp.shape == () and zp.dtype == np.int8 and zp == 0
        want = np.float32(max(float(np.abs(a).max()) for a in acts[src])) / np.float32(127)
        assert abs(float(scale) - float(want)) <= 1e-5 * float(want), (src, scale, want)
    # Weights: int8 behind a per-channel DequantizeLinear, scale max|w_k| / 127.
    floats = inits(model)
    for layer, w in (("conv1", "W1"), ("conv2", "W2"), ("fc", "W3")):
        dq = producer(qdq, by_name[layer].input[1])
        assert dq.op_type == "DequantizeLinear" and producer(qdq, dq.input[0]) is None
        assert helper.get_attribute_value(next(a for a in dq.attribute if a.name == "axis")) == 0
        q, s = values[dq.input[0]], values[dq.input[1]]
        assert q.dtype == np.int8 and q.min() >= -127 and q.max() <= 127
        ref = floats[w].reshape(floats[w].shape[0], -1)
        want = np.abs(ref).max(axis=1).astype(np.float32) / np.float32(127)
        np.testing.assert_array_equal(s, want)
        err = np.abs(q.reshape(ref.shape).astype(np.float64) * s[:, None] - ref)
        assert (err <= 0.5 * s[:, None] * (1 + 1e-5)).all()
        assert w not in values  # the float weight is gone


def test_onnxruntime_runs_the_export_close_to_fp32(exported):
    model, qdq, batches, _ = exported
    for b in batches:
        want = ort_run(model, {"x": b})[0]
        got = ort_run(qdq, {"x": b})[0]
        err = rel_error(got, want)
        assert 0 < err < QDQ_TOL, err  # quantized (not identical), and within int8 noise


def test_kiln_builds_folds_and_runs_the_export(exported, tmp_path):
    model, qdq, batches, path = exported
    kiln("build", path, "-o", tmp_path / "p.plan")
    info = json.loads(kiln("inspect", path, "--json").stdout)
    notes = [p for p in info["passes"] if p.startswith("fold_qdq:")]
    pairs = activation_pairs(qdq)
    values = inits(qdq)
    assert len(notes) == len(pairs)
    for src, (q, _) in pairs.items():
        hexbits = f"0x{float_bits(values[q.input[1]]):08x}"
        assert any(f"on '{src}'" in n and hexbits in n for n in notes), (src, hexbits, notes)
    ops = [l["op_type"] for l in info["layers"]]
    assert "QuantizeLinear" not in ops and "DequantizeLinear" not in ops

    folded = without_activation_pairs(qdq)
    for k, b in enumerate(batches[:2]):
        got = run_kiln_model(path, {"x": b}, tmp_path / f"run{k}")["y"]
        # kiln folds the activation pairs and keeps the int8 weights' values:
        # exactly the model with the pairs removed, up to float rounding...
        assert rel_error(got, ort_run(folded, {"x": b})[0]) < FLOAT_TOL
        # ...and within int8 noise of onnxruntime's quantized run.
        assert rel_error(got, ort_run(qdq, {"x": b})[0]) < QDQ_TOL


def test_export_to_an_unwritable_path_is_a_bad_input_error(tmp_path):
    src = tmp_path / "m.onnx"
    onnx.save(small_model(), str(src))
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "b0.npy", calib_batches(1)[0])
    out = tmp_path / "missing_dir" / "m.qdq.onnx"
    r = kiln("calibrate", src, "--calib", tmp_path / "calib", "-o", out, check=False)
    one_line_error(r, 3, str(out))
    assert not out.parent.exists()


class _Reader:
    def __init__(self, batches):
        self.it = iter([{"x": b} for b in batches])

    def get_next(self):
        return next(self.it, None)


def ort_quantized(tmp_path, symmetric_int8):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, out = tmp_path / "f.onnx", tmp_path / ("ort_s8.onnx" if symmetric_int8 else "ort_u8.onnx")
    onnx.save(small_model(seed=3), str(src))
    quantize_static(str(src), str(out), _Reader(calib_batches(seed=4)), quant_format=QuantFormat.QDQ,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QInt8 if symmetric_int8 else QuantType.QUInt8,
                    extra_options={"ActivationSymmetric": symmetric_int8})
    m = onnx.load(str(out))
    m.ir_version = 8
    onnx.save(m, str(out))
    return m, out


def test_onnxruntime_symmetric_int8_model_folds(tmp_path):
    m, path = ort_quantized(tmp_path, symmetric_int8=True)
    pairs = activation_pairs(m)
    assert pairs
    info = json.loads(kiln("inspect", path, "--json").stdout)
    assert len([p for p in info["passes"] if p.startswith("fold_qdq:")]) == len(pairs)
    assert not {"QuantizeLinear", "DequantizeLinear"} & {l["op_type"] for l in info["layers"]}
    b = calib_batches(seed=4)[0]
    got = run_kiln_model(path, {"x": b}, tmp_path / "run")["y"]
    assert rel_error(got, ort_run(m, {"x": b})[0]) < QDQ_TOL


def test_onnxruntime_uint8_model_keeps_real_qdq_ops(tmp_path):
    m, path = ort_quantized(tmp_path, symmetric_int8=False)
    info = json.loads(kiln("inspect", path, "--json").stdout)
    assert not [p for p in info["passes"] if p.startswith("fold_qdq:")]
    ops = [l["op_type"] for l in info["layers"]]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    b = calib_batches(seed=4)[0]
    got = run_kiln_model(path, {"x": b}, tmp_path / "run")["y"]
    want = ort_run(m, {"x": b})[0]
    # Both run the same quantization; a float difference in a layer can move
    # a value across a rounding boundary, one uint8 step of that tensor.
    assert rel_error(got, want) < 0.01, rel_error(got, want)
