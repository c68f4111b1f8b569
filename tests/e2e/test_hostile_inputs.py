"""Hostile inputs through the CLI: each gets a typed one-line error with the
documented exit code (or, for NaN/Inf data, a normal run), never a crash, and
never a partially written output left behind. docs/hostile_inputs.md lists
every case with the test that covers it."""
import numpy as np
import onnx
from onnx import TensorProto, helper

from conftest import kiln, one_line_error


def relu_model(shape=(2, 3), dtype=TensorProto.FLOAT):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", dtype, list(shape))],
                          [helper.make_tensor_value_info("y", dtype, list(shape))])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def built(tmp_path, shape=(2, 3)):
    path = tmp_path / "relu.onnx"
    onnx.save(relu_model(shape), str(path))
    plan = tmp_path / "relu.plan"
    kiln("build", path, "-o", plan)
    return plan


def test_huge_declared_shape_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.onnx"
    onnx.save(relu_model((1 << 31, 1 << 31, 1 << 31)), str(path))
    r = kiln("build", path, "-o", tmp_path / "x.plan", check=False)
    one_line_error(r, 3, "graph input 'x'", "too many elements")
    assert not (tmp_path / "x.plan").exists()


def test_nan_and_inf_inputs_run_and_propagate(tmp_path):
    plan = built(tmp_path)
    x = np.array([[np.nan, np.inf, -np.inf], [1.0, -2.0, 0.0]], np.float32)
    np.save(tmp_path / "x.npy", x)
    kiln("run", plan, "--input", f"x={tmp_path / 'x.npy'}", "--outdir", tmp_path / "o")
    y = np.load(tmp_path / "o" / "y.npy")
    assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == 0 and list(y[1]) == [1, 0, 0]


def test_wrong_input_dtype(tmp_path):
    plan = built(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.int32))
    one_line_error(kiln("run", plan, "--input", f"x={tmp_path / 'x.npy'}", "--outdir", tmp_path / "o", check=False),
                   3, "x", "fp32")


def test_unwritable_outputs_leave_nothing_behind(tmp_path):
    plan = built(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = kiln("run", plan, "--random-inputs", 1, "--outdir", blocker / "out", check=False)
    one_line_error(r, 3, "file")
    r = kiln("build", tmp_path / "relu.onnx", "-o", blocker / "x.plan", check=False)
    one_line_error(r, 3, "x.plan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "relu.onnx", "relu.plan"]


def test_plan_from_a_future_format_version(tmp_path):
    plan = built(tmp_path)
    data = bytearray(plan.read_bytes())
    data[8] += 1  # format version, right after the 8-byte magic
    future = tmp_path / "future.plan"
    future.write_bytes(bytes(data))
    one_line_error(kiln("run", future, "--random-inputs", 1, "--outdir", tmp_path / "o", check=False), 3,
                   "future.plan", "format version")


def test_malformed_npy(tmp_path):
    plan = built(tmp_path)
    bad = tmp_path / "x.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00" + b"\xff" * 40)
    one_line_error(kiln("run", plan, "--input", f"x={bad}", "--outdir", tmp_path / "o", check=False), 3, "x.npy")
