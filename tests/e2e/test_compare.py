"""`kiln compare`: an engine's tensors, layer by layer, against kiln's CPU FP32
run of the model. The network output's numbers are checked independently:
cosine and max |error| computed here with numpy from `kiln run` outputs
against onnxruntime."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import kiln, one_line_error

HW = 24


def small_model(path, hw=HW, batch="N", seed=0):
    """Conv+Relu -> Conv+Relu -> MaxPool -> Conv (the output), random weights."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(x, name, cin, cout):
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")])
        nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [name], name=name,
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        return name

    h = conv("x", "conv1", 3, 16)
    nodes.append(helper.make_node("Relu", [h], ["relu1"], name="relu1"))
    h = conv("relu1", "conv2", 16, 32)
    nodes.append(helper.make_node("Relu", [h], ["relu2"], name="relu2"))
    nodes.append(helper.make_node("MaxPool", ["relu2"], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    conv("pool", "conv3", 32, 8)
    nodes[-1].output[0] = "y"
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, hw, hw])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    wd = tmp_path_factory.mktemp("compare")
    model = small_model(wd / "small.onnx")
    rng = np.random.default_rng(7)
    calib = wd / "calib"
    calib.mkdir()
    for k in range(8):
        np.save(calib / f"{k:02d}.npy", rng.random((1, 3, HW, HW), dtype=np.float32))
    x = rng.random((1, 3, HW, HW), dtype=np.float32)
    np.save(wd / "x.npy", x)
    kiln("build", model, "-o", wd / "fp32.plan")
    kiln("build", model, "-o", wd / "int8.plan", "--int8", "--calib", calib)
    return {"wd": wd, "model": model, "x": x}


def compare(setup, plan, *extra):
    out = setup["wd"] / (plan.stem + ".compare.json")
    r = kiln("compare", setup["model"], plan, "--input", f"x={setup['wd'] / 'x.npy'}", "--json", out, *extra)
    return json.loads(out.read_text()), r.stdout


def test_fp32_cpu_plan_matches_everywhere(setup):
    rep, stdout = compare(setup, setup["wd"] / "fp32.plan")
    names = {t["tensor"] for t in rep["tensors"]}
    # Every fused layer's output: conv1+relu1, conv2+relu2, the pool, conv3.
    assert {"relu1", "relu2", "pool", "y"} <= names, names
    for t in rep["tensors"]:
        assert t["precision"] == "fp32"
        assert t["cosine"] > 1 - 1e-9, t
        assert t["max_rel"] < 1e-6, t
        assert t["ref_max"] > 0, t  # a real comparison, not of two empty tensors
    assert rep["skipped"] == [] and rep["mismatched"] == []
    assert [o["tensor"] for o in rep["outputs"]] == ["y"] and rep["outputs"][0]["network_output"]
    assert "network outputs:" in stdout and "worst" in stdout


def test_int8_plan_worst_layer_is_a_qconv(setup):
    plan = setup["wd"] / "int8.plan"
    rep, stdout = compare(setup, plan, "--top", "3")
    tensors = rep["tensors"]
    assert len(tensors) >= 4
    cos = [t["cosine"] for t in tensors]
    assert cos == sorted(cos), "worst (lowest cosine) first"
    assert 0.9 < cos[0] < 1 - 1e-6, tensors[0]  # INT8 loses something, not everything
    assert tensors[0]["max_abs"] > 0
    inspect = json.loads(kiln("inspect", plan, "--json").stdout)
    qconvs = {l["name"] for l in inspect["layers"] if l["op_type"] == "kiln::QConv"}
    assert len(qconvs) == 3, inspect["layers"]
    assert tensors[0]["layer"] in qconvs, (tensors[0], qconvs)
    assert tensors[0]["op_type"] == "kiln::QConv"
    # Int8 tensors are dequantized before comparing; the quantized input has no FP32 twin.
    assert any(t["precision"] == "int8" for t in tensors), tensors
    assert any(s.startswith("x/") for s in rep["skipped"]), rep["skipped"]
    # --top 3: three ranked rows in the printed table.
    table = stdout.split("lowest cosine similarity first):\n")[1].split("\n\n")[0].splitlines()
    assert len(table) == 1 + 3, table


def test_int8_output_error_matches_numpy_vs_onnxruntime(setup, tmp_path):
    """compare's network-output numbers against ones computed here.

    compare's reference is kiln's CPU FP32 run, not onnxruntime, so the two
    agree up to how far those differ: by the triangle inequality the max |error|
    may differ by at most max |kiln FP32 - onnxruntime| (measured here), and the
    cosine by 1e-5 plus four times their relative L2 distance (about 1e-7 here)."""
    wd, x = setup["wd"], setup["x"]
    rep, _ = compare(setup, wd / "int8.plan")
    got = rep["outputs"][0]
    kiln("run", wd / "int8.plan", "--input", f"x={wd / 'x.npy'}", "--outdir", tmp_path / "int8")
    kiln("run", wd / "fp32.plan", "--input", f"x={wd / 'x.npy'}", "--outdir", tmp_path / "fp32")
    y8 = np.load(tmp_path / "int8" / "y.npy").astype(np.float64)
    y32 = np.load(tmp_path / "fp32" / "y.npy").astype(np.float64)
    ref = ort.InferenceSession(str(setup["model"]), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    ref = ref.astype(np.float64)

    cos = float((y8 * ref).sum() / np.sqrt((y8 * y8).sum() * (ref * ref).sum()))
    max_abs = float(np.abs(y8 - ref).max())
    fp32_gap = float(np.abs(y32 - ref).max())
    fp32_rel_l2 = float(np.linalg.norm(y32 - ref) / np.linalg.norm(ref))
    assert fp32_gap < 1e-4 * np.abs(ref).max()
    assert abs(got["max_abs"] - max_abs) <= fp32_gap + 1e-7, (got, max_abs, fp32_gap)
    assert abs(got["cosine"] - cos) <= 1e-5 + 4 * fp32_rel_l2, (got, cos)
    assert abs(got["max_rel"] - max_abs / np.abs(ref).max()) <= 1e-3 * got["max_rel"] + 1e-6
    # Against kiln's own FP32 run (compare's reference) the numbers are the same.
    assert got["max_abs"] == pytest.approx(float(np.abs(y8 - y32).max()), rel=1e-6, abs=1e-9)
    assert got["cosine"] < 1 - 1e-6  # INT8 did change the output


def test_plan_from_another_model_is_refused(setup, tmp_path):
    other = small_model(tmp_path / "other.onnx", hw=16)
    kiln("build", other, "-o", tmp_path / "other.plan")
    r = kiln("compare", setup["model"], tmp_path / "other.plan", "--random-inputs", "0", check=False)
    one_line_error(r, 3, "other.plan", "small.onnx", "[1,3,16,16]", "[1,3,24,24]")


def test_profile_plan_compares_the_batch_asked(setup, tmp_path):
    plan = tmp_path / "profile.plan"
    kiln("build", setup["model"], "-o", plan, "--min-batch", "1", "--opt-batch", "2", "--max-batch", "4")
    out = tmp_path / "p.json"
    kiln("compare", setup["model"], plan, "--random-inputs", "3", "--batch", "4", "--json", out)
    rep = json.loads(out.read_text())
    assert rep["batch"] == 4 and rep["outputs"][0]["shape"][0] == 4
    assert all(t["cosine"] > 1 - 1e-9 for t in rep["tensors"])
    # A batch the plan does not specialize: a usage error naming its batches.
    r = kiln("compare", setup["model"], plan, "--random-inputs", "3", "--batch", "3", check=False)
    one_line_error(r, 2, "1, 2, 4")

