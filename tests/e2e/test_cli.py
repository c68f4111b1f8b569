"""The kiln command line: round trips through plan files, inspect output, and
the typed errors with their documented exit codes (0 ok, 2 usage, 3 bad input,
4 unsupported, 1 internal)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from conftest import SEED_MODEL, kiln, one_line_error, rel_error, run_kiln_model


def save(model, path):
    onnx.save(model, str(path))
    return path


def relu_model(dtype=TensorProto.FLOAT):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
                          [helper.make_tensor_value_info("x", dtype, [2, 3])],
                          [helper.make_tensor_value_info("y", dtype, [2, 3])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_build_run_round_trip_and_random_inputs(tmp_path):
    plan = tmp_path / "seed.plan"
    kiln("build", SEED_MODEL, "-o", plan, "--batch", 3)
    r = kiln("run", plan, "--random-inputs", 7, "--outdir", tmp_path / "a")
    kiln("run", plan, "--random-inputs", 7, "--outdir", tmp_path / "b")
    for name in ("bbox_regression", "cls_logits"):
        a, b = np.load(tmp_path / "a" / f"{name}.npy"), np.load(tmp_path / "b" / f"{name}.npy")
        assert a.shape[0] == 3 and np.array_equal(a, b)
    assert "bbox_regression" in r.stdout


def test_inspect_model_and_plan_json(tmp_path):
    plan = tmp_path / "seed.plan"
    kiln("build", SEED_MODEL, "-o", plan, "--no-opt")
    for target, key in ((SEED_MODEL, "layers_before"), (plan, "layers")):
        info = json.loads(kiln("inspect", target, "--json").stdout)
        assert [i["name"] for i in info["inputs"]] == ["images"]
        assert {o["name"] for o in info["outputs"]} == {"bbox_regression", "cls_logits"}
        ops = [l["op_type"] for l in info[key]]
        assert ops.count("Conv") == 7 and ops.count("BatchNormalization") == 3
        assert all(l["path"] == "kernel" for l in info[key])
        # Reshapes alias their input and the head's concats are written in place.
        assert info["launches"] == sum(not l["elided"] for l in info["layers"])
        assert info["launches"] < len(info["layers"])
    text = kiln("inspect", plan).stdout
    assert "conv1" in text and "launch" in text


CHAINS = [f"{op}{i}" for i in (1, 2, 3) for op in ("conv", "bn", "relu")]


def test_inspect_shows_the_seed_chains_collapse_9_to_3(tmp_path):
    info = json.loads(kiln("inspect", SEED_MODEL, "--json").stdout)
    before = [l["name"] for l in info["layers_before"] if l["name"] in CHAINS]
    after = [l for l in info["layers"] if set(l["fused"] or [l["name"]]) & set(CHAINS)]
    assert len(before) == 9 and len(after) == 3
    assert [l["fused"] for l in after] == [[f"conv{i}", f"bn{i}", f"relu{i}"] for i in (1, 2, 3)]
    assert info["fused_groups"][:3] == [f"conv{i}+bn{i}+relu{i} -> CBR" for i in (1, 2, 3)]
    assert isinstance(info["launches_before"], int) and isinstance(info["launches_after"], int)
    assert info["launches_before"] - info["launches_after"] == 6
    text = kiln("inspect", SEED_MODEL).stdout
    assert "conv1+bn1+relu1 -> CBR" in text
    assert f"kernel launches: {info['launches_before']} -> {info['launches_after']}" in text
    # A plan remembers the launch count of the graph it was optimized from.
    plan = tmp_path / "seed.plan"
    kiln("build", SEED_MODEL, "-o", plan)
    pinfo = json.loads(kiln("inspect", plan, "--json").stdout)
    assert (pinfo["launches_before"], pinfo["launches_after"]) == (info["launches_before"], info["launches_after"])
    assert pinfo["fused_groups"] == info["fused_groups"]
    assert any(p.startswith("fold_batchnorm:") for p in pinfo["passes"])


def test_model_local_function_is_expanded(tmp_path):
    # ScaledRelu(x) = Relu(x) * 2, defined inside the model.
    fn = helper.make_function(
        "com.kiln.test", "ScaledRelu", ["X"], ["Y"],
        [helper.make_node("Relu", ["X"], ["r"]),
         helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])),
         helper.make_node("Mul", ["r", "two"], ["Y"])],
        [helper.make_opsetid("", 17)])
    g = helper.make_graph([helper.make_node("ScaledRelu", ["x"], ["y"], name="sr", domain="com.kiln.test")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 5])])
    m = helper.make_model(g, functions=[fn], opset_imports=[helper.make_opsetid("", 17),
                                                            helper.make_opsetid("com.kiln.test", 1)])
    m.ir_version = 8  # newer onnx packages write IR versions older onnxruntime builds refuse
    path = save(m, tmp_path / "fn.onnx")
    info = json.loads(kiln("inspect", path, "--json").stdout)
    assert {l["path"] for l in info["layers_before"]} == {"expanded:ScaledRelu"}
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = run_kiln_model(path, {"x": x}, tmp_path)["y"]
    assert rel_error(got, ref) == 0.0


def test_unsupported_op_names_node_op_domain_opset(tmp_path):
    g = helper.make_graph([helper.make_node("FrobnicateBoxes", ["x"], ["y"], name="frob1", domain="com.acme")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.acme", 3)])
    path = save(m, tmp_path / "frob.onnx")
    line = one_line_error(kiln("build", path, "-o", tmp_path / "x.plan", check=False), 4,
                          "frob1", "FrobnicateBoxes", "com.acme", "3")
    assert "plugin" in line
    assert not (tmp_path / "x.plan").exists()


def test_unsupported_dtype_is_rejected(tmp_path):
    path = save(relu_model(TensorProto.DOUBLE), tmp_path / "double.onnx")
    one_line_error(kiln("build", path, "-o", tmp_path / "x.plan", check=False), 4, "x")


def test_corrupt_truncated_and_foreign_plans(tmp_path):
    plan = tmp_path / "seed.plan"
    kiln("build", SEED_MODEL, "-o", plan)
    data = bytearray(plan.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.plan"
    bad.write_bytes(bytes(data))
    one_line_error(kiln("run", bad, "--random-inputs", 1, "--outdir", tmp_path / "o", check=False), 3,
                   "flipped.plan", "corrupt")
    short = tmp_path / "short.plan"
    short.write_bytes(plan.read_bytes()[:1000])
    one_line_error(kiln("run", short, "--random-inputs", 1, "--outdir", tmp_path / "o", check=False), 3, "short.plan")
    junk = tmp_path / "junk.plan"
    junk.write_bytes(b"\x00" * 64)
    one_line_error(kiln("inspect", junk, check=False), 3, "junk.plan")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_corrupt_onnx_and_missing_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not protobuf" * 10)
    one_line_error(kiln("build", bad, "-o", tmp_path / "x.plan", check=False), 3, "bad.onnx")
    one_line_error(kiln("build", tmp_path / "nope.onnx", "-o", tmp_path / "x.plan", check=False), 3, "nope.onnx")
    one_line_error(kiln("run", tmp_path / "nope.plan", "--random-inputs", 1, "--outdir", tmp_path, check=False), 3,
                   "nope.plan")


def test_wrong_input_shape_and_name(tmp_path):
    path = save(relu_model(), tmp_path / "relu.onnx")
    plan = tmp_path / "relu.plan"
    kiln("build", path, "-o", plan)
    f = tmp_path / "x.npy"
    np.save(f, np.zeros((3, 2), np.float32))
    one_line_error(kiln("run", plan, "--input", f"x={f}", "--outdir", tmp_path / "o", check=False), 3, "x", "[2,3]")
    np.save(f, np.zeros((2, 3), np.float32))
    one_line_error(kiln("run", plan, "--input", f"nosuch={f}", "--outdir", tmp_path / "o", check=False), 3, "nosuch")


def test_usage_errors():
    assert kiln("frobnicate", check=False).returncode == 2
    assert kiln("build", check=False).returncode == 2
    assert kiln("run", "x.plan", "--bogus-flag", check=False).returncode == 2


def test_gpu_options_without_a_gpu(tmp_path):
    """Where no GPU is visible (or kiln has no CUDA backend) a CUDA build fails
    cleanly, and GPU-only flags on a CPU build are usage errors."""
    import shutil
    import subprocess
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
        import pytest
        pytest.skip("a GPU is present")
    path = save(relu_model(), tmp_path / "relu.onnx")
    r = kiln("build", path, "-o", tmp_path / "g.plan", "--device", "cuda", check=False)
    one_line_error(r, 4, "--device cpu")
    assert not (tmp_path / "g.plan").exists()
    one_line_error(kiln("build", path, "-o", tmp_path / "c.plan", "--fp16", check=False), 2, "--device cuda")
    one_line_error(kiln("build", "--from-plan", tmp_path / "c.plan", "-o", tmp_path / "n.plan", check=False), 2,
                   "--device cuda")
