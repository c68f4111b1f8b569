"""kiln Python bindings checked against onnxruntime as the oracle."""
import threading

import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
from conftest import SEED_MODEL, make_tiny_model, ort_run  # noqa: E402


def build_cpu(path, **parse):
    return kiln.Builder(device="cpu").build(kiln.parse_onnx(str(path), **parse))


def test_version():
    assert kiln.version() == kiln.__version__
    assert len(kiln.version().split(".")) == 3


def test_tiny_model_matches_onnxruntime(tiny_model, rng):
    plan = build_cpu(tiny_model)
    assert isinstance(plan, bytes) and len(plan) > 0
    engine = kiln.Runtime().deserialize(plan)
    assert [t.name for t in engine.inputs] == ["x"]
    assert engine.inputs[0].dtype == np.float32 and engine.inputs[0].shape == (2, 8)
    outs = {t.name: t for t in engine.outputs}
    assert outs["probs"].dtype == np.float32 and outs["probs"].shape == (2, 4)
    assert outs["label"].dtype == np.int64 and outs["label"].shape == (2,)
    assert not outs["label"].dynamic_rows

    x = rng.standard_normal((2, 8)).astype(np.float32)
    got = engine.create_context().run({"x": x})
    want = ort_run(tiny_model, {"x": x})
    assert set(got) == {"probs", "label"}
    assert got["probs"].dtype == np.float32 and got["probs"].shape == (2, 4)
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-4, atol=1e-6)
    assert got["label"].dtype == np.int64
    np.testing.assert_array_equal(got["label"], want["label"])


def test_seed_model_matches_onnxruntime(rng):
    batch = 2
    net = kiln.parse_onnx(str(SEED_MODEL), batch=batch)
    assert net.inputs[0].name == "images" and net.inputs[0].shape == (batch, 3, 128, 128)
    engine = kiln.Runtime().deserialize(kiln.Builder().build(net))
    x = rng.standard_normal((batch, 3, 128, 128)).astype(np.float32)
    got = engine.create_context().run({"images": x})
    want = ort_run(SEED_MODEL, {"images": x})
    assert set(got) == set(want) == {"bbox_regression", "cls_logits"}
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        # Convolutions sum hundreds of products: relative 1e-4 against the
        # output's scale, not per element (values near zero cancel).
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_summary_lists_layers(tiny_model):
    engine = kiln.Runtime().deserialize(build_cpu(tiny_model))
    s = engine.summary()
    assert s.num_layers == len(s.layers) >= 1
    assert s.launches >= 1
    ops = [layer.op_type for layer in s.layers]
    assert "ArgMax" in ops
    for layer in s.layers:
        assert layer.name and layer.op_type
        assert layer.precision == "fp32"
        assert isinstance(layer.tactic, str)
    assert [t.name for t in s.inputs] == ["x"]


def test_plan_round_trip(tiny_model, tmp_path, rng):
    plan = build_cpu(tiny_model)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    first = kiln.Runtime().deserialize(plan).create_context().run({"x": x})

    path = tmp_path / "tiny.plan"
    kiln.write_plan(str(path), plan)
    assert path.read_bytes() == plan
    again = kiln.Runtime().load(str(path)).create_context().run({"x": x})
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    want = ort_run(tiny_model, {"x": x})
    np.testing.assert_allclose(again["probs"], want["probs"], rtol=1e-4, atol=1e-6)


def test_inputs_are_copied_and_strided_views_accepted(tiny_model, rng):
    engine = kiln.Runtime().deserialize(build_cpu(tiny_model))
    ctx = engine.create_context()
    big = rng.standard_normal((8, 4)).astype(np.float32)
    x = big.T[:2]  # (2, 8), not C-contiguous
    assert not x.flags.c_contiguous
    got = ctx.run({"x": x})
    want = ort_run(tiny_model, {"x": np.ascontiguousarray(x)})
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-4, atol=1e-6)
    # Outputs belong to the caller: a second run must not change them.
    kept = got["probs"].copy()
    ctx.run({"x": np.zeros((2, 8), np.float32)})
    np.testing.assert_array_equal(got["probs"], kept)


def test_missing_model_file_names_the_file(tmp_path):
    missing = tmp_path / "no_such_model.onnx"
    with pytest.raises(kiln.BadInputError) as info:
        kiln.parse_onnx(str(missing))
    assert isinstance(info.value, ValueError) and isinstance(info.value, kiln.Error)
    assert info.value.code == "bad_input"
    assert "no_such_model.onnx" in str(info.value)


def test_missing_plan_file_names_the_file(tmp_path):
    with pytest.raises(ValueError, match="no_such.plan"):
        kiln.Runtime().load(str(tmp_path / "no_such.plan"))


def test_wrong_input_shape_is_value_error_naming_input(tiny_model):
    ctx = kiln.Runtime().deserialize(build_cpu(tiny_model)).create_context()
    with pytest.raises(ValueError, match="'x'") as info:
        ctx.run({"x": np.zeros((3, 8), np.float32)})
    assert isinstance(info.value, kiln.BadInputError)
    assert "[3,8]" in str(info.value) and "[2,8]" in str(info.value)


def test_wrong_dtype_and_names(tiny_model):
    ctx = kiln.Runtime().deserialize(build_cpu(tiny_model)).create_context()
    with pytest.raises(kiln.BadInputError, match="'x'"):
        ctx.run({"x": np.zeros((2, 8), np.int32)})
    with pytest.raises(kiln.BadInputError, match="'x'.*float64"):
        ctx.run({"x": np.zeros((2, 8), np.float64)})
    with pytest.raises(kiln.BadInputError, match="'x'.*missing"):
        ctx.run({})
    with pytest.raises(kiln.BadInputError, match="'y'"):
        ctx.run({"x": np.zeros((2, 8), np.float32), "y": np.zeros(1, np.float32)})


def test_corrupt_plan_is_bad_input(tiny_model):
    plan = bytearray(build_cpu(tiny_model))
    plan[len(plan) // 2] ^= 0xFF
    with pytest.raises(kiln.BadInputError):
        kiln.Runtime().deserialize(bytes(plan))
    with pytest.raises(kiln.BadInputError):
        kiln.Runtime().deserialize(b"not a plan")


def test_unsupported_op_is_not_implemented(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Det", ["x"], ["y"], name="det")
    graph = helper.make_graph(
        [node],
        "det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(kiln.UnsupportedError) as info:
        kiln.Builder().build(kiln.parse_onnx(str(path)))
    assert isinstance(info.value, NotImplementedError)
    assert info.value.code == "unsupported"
    assert "Det" in str(info.value)


def test_builder_options_and_bad_device():
    b = kiln.Builder(device="cpu", fp16=False, fp32_layers=["a"], optimize=False)
    assert b.device == "cpu" and b.fp32_layers == ["a"] and not b.optimize
    with pytest.raises(kiln.UsageError, match="tpu"):
        kiln.Builder(device="tpu")


def test_unoptimized_build_matches_too(tiny_model, rng):
    net = kiln.parse_onnx(tiny_model)
    plan = kiln.Builder(optimize=False).build(net)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    got = kiln.Runtime().deserialize(plan).create_context().run({"x": x})
    np.testing.assert_allclose(got["probs"], ort_run(tiny_model, {"x": x})["probs"], rtol=1e-4, atol=1e-6)


def test_cpu_engine_has_no_device_buffers(tiny_model):
    ctx = kiln.Runtime().deserialize(build_cpu(tiny_model)).create_context()
    assert ctx.device_address("x") == 0
    with pytest.raises(kiln.UsageError):
        ctx.enqueue()
    with pytest.raises(kiln.UsageError, match="'x'"):
        ctx.device_tensor("x")
    with pytest.raises(kiln.BadInputError, match="'nope'"):
        ctx.device_tensor("nope")


def test_missing_plugin_library_names_the_file(tmp_path):
    with pytest.raises(kiln.BadInputError, match="libnothing.so"):
        kiln.load_plugin_library(str(tmp_path / "libnothing.so"))


def test_context_outlives_engine_and_runtime(tiny_model, rng):
    ctx = kiln.Runtime().deserialize(build_cpu(tiny_model)).create_context()
    x = rng.standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(ctx.run({"x": x})["probs"], ort_run(tiny_model, {"x": x})["probs"], rtol=1e-4,
                               atol=1e-6)


def test_threads_run_contexts_concurrently(tmp_path, rng):
    # The GIL is released while running: contexts in several threads must
    # each get their own right answer.
    path = make_tiny_model(tmp_path / "t.onnx", rng)
    engine = kiln.Runtime().deserialize(build_cpu(path))
    xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(4)]
    results = [None] * len(xs)

    def work(i):
        ctx = engine.create_context()
        for _ in range(20):
            results[i] = ctx.run({"x": xs[i]})["probs"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, got in zip(xs, results):
        np.testing.assert_allclose(got, ort_run(path, {"x": x})["probs"], rtol=1e-4, atol=1e-6)


def test_non_array_inputs_are_bad_input(tiny_model):
    ctx = kiln.Runtime().deserialize(build_cpu(tiny_model)).create_context()
    with pytest.raises(kiln.BadInputError, match="str"):
        ctx.run({1: np.zeros((2, 8), np.float32)})
    with pytest.raises(kiln.BadInputError, match="'x'.*object"):
        ctx.run({"x": object()})
    # A nested list becomes float64: refused, naming the input.
    with pytest.raises(kiln.BadInputError, match="'x'"):
        ctx.run({"x": [[0.0] * 8] * 2})


def test_bool_and_fp16_tensors(tmp_path, rng):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("Greater", ["a", "zero"], ["gt"], name="gt"),
        helper.make_node("Cast", ["a"], ["half"], name="to_half", to=TensorProto.FLOAT16),
        helper.make_node("Cast", ["flags"], ["flags_i32"], name="to_i32", to=TensorProto.INT32),
    ]
    graph = helper.make_graph(
        nodes,
        "dtypes",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("flags", TensorProto.BOOL, [2, 3])],
        [helper.make_tensor_value_info("gt", TensorProto.BOOL, [2, 3]),
         helper.make_tensor_value_info("half", TensorProto.FLOAT16, [2, 3]),
         helper.make_tensor_value_info("flags_i32", TensorProto.INT32, [2, 3])],
        initializer=[numpy_helper.from_array(np.zeros(1, np.float32), "zero")],
    )
    path = tmp_path / "dtypes.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))

    engine = kiln.Runtime().deserialize(build_cpu(path))
    assert {t.name: t.dtype for t in engine.inputs} == {"a": np.float32, "flags": np.bool_}
    assert {t.name: t.dtype for t in engine.outputs} == {"gt": np.bool_, "half": np.float16, "flags_i32": np.int32}
    feeds = {"a": rng.standard_normal((2, 3)).astype(np.float32), "flags": rng.random((2, 3)) > 0.5}
    got = engine.create_context().run(feeds)
    want = ort_run(path, feeds)
    for name in ("gt", "half", "flags_i32"):
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_batch_profile_runs_every_batch(dynamic_model, rng):
    plan = kiln.Builder().build_profile(dynamic_model, 1, 4, 8)
    engine = kiln.Runtime().deserialize(plan)
    assert engine.profile == (1, 4, 8)
    assert engine.inputs[0].batch_axis == 0 and engine.inputs[0].shape == (8, 8)
    ctx = engine.create_context()
    for n in (1, 3, 8):
        x = rng.standard_normal((n, 8)).astype(np.float32)
        got = ctx.run({"x": x})
        want = ort_run(dynamic_model, {"x": x})
        assert got["probs"].shape == (n, 4)
        np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(got["label"], want["label"])
    assert ctx.set_batch(3) == 4  # specializations 1, 2, 4, 8
    with pytest.raises(ValueError, match=r"outside this engine's batch profile \[1, 8\]"):
        ctx.set_batch(9)
    with pytest.raises(ValueError, match="input 'x' has batch 9"):
        ctx.run({"x": np.zeros((9, 8), np.float32)})
    # Single-batch engines have no profile and no batch to pick.
    single = kiln.Runtime().deserialize(kiln.Builder().build(kiln.parse_onnx(dynamic_model, batch=2)))
    assert single.profile == ()
    with pytest.raises(RuntimeError, match="fixed batch"):
        single.create_context().set_batch(2)
