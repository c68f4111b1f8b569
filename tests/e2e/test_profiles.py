"""Dynamic batch through batch profiles: `kiln build --min-batch/--opt-batch/
--max-batch` gives one plan that runs every batch in the range; `kiln run
--batch B` matches onnxruntime at that batch. The GPU variants skip where no
CUDA device is visible."""
import json
import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import SEED_MODEL, kiln, one_line_error, rel_error

PROFILE = ("--min-batch", 1, "--opt-batch", 4, "--max-batch", 8)


def gpu_present():
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


needs_gpu = pytest.mark.skipif(not gpu_present(), reason="no CUDA device")


def dynamic_model(path, batch="N", batchless_output=False, k=5):
    """x[N,3,8,8] -> Conv(8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y[N,k]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (8, 3, 3, 3)), ("B", (8,)), ("G", (k, 8)), ("GB", (k,)))]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "G", "GB"], ["y"], name="gemm", transB=1)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, k])]
    if batchless_output:
        nodes.append(helper.make_node("ReduceMean", ["y"], ["total"], name="over_batch", axes=[0], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, [k]))
    g = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return dynamic_model(tmp_path_factory.mktemp("model") / "dyn.onnx")


def build_profile(model, plan, *extra):
    r = kiln("build", model, "-o", plan, *PROFILE, *extra)
    assert "batch profile: min 1, opt 4, max 8 (specializations at batch 1, 2, 4, 8)" in r.stdout
    return plan


def run_at(plan, x, tmp_path, batch=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    f = tmp_path / "x.npy"
    np.save(f, x)
    args = ["run", plan, "--input", f"x={f}", "--outdir", tmp_path / "out"]
    if batch is not None:
        args += ["--batch", batch]
    kiln(*args)
    return np.load(tmp_path / "out" / "y.npy")


def check_batches(model, plan, tmp_path, tol):
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for b in (1, 3, 4, 5, 8):
        x = np.random.default_rng(b).standard_normal((b, 3, 8, 8)).astype(np.float32)
        got = run_at(plan, x, tmp_path / f"b{b}", batch=b)
        ref = sess.run(None, {"x": x})[0]
        assert got.shape == (b, 5), got.shape
        assert rel_error(got, ref) < tol, (b, rel_error(got, ref))


def test_cpu_profile_matches_onnxruntime_at_every_batch(model, tmp_path):
    plan = build_profile(model, tmp_path / "dyn.plan")
    check_batches(model, plan, tmp_path, 1e-5)
    # Random inputs take --batch (default: the opt batch).
    r = kiln("run", plan, "--random-inputs", 3, "--batch", 6, "--outdir", tmp_path / "r6")
    assert "y: fp32[6,5]" in r.stdout
    assert np.load(tmp_path / "r6" / "y.npy").shape == (6, 5)
    kiln("run", plan, "--random-inputs", 3, "--outdir", tmp_path / "ropt")
    assert np.load(tmp_path / "ropt" / "y.npy").shape == (4, 5)


def seed_ssd_matches(plan, tmp_path, tol):
    """The SSD-style seed model: its heads reshape with the batch folded in at each specialization."""
    sess = ort.InferenceSession(str(SEED_MODEL), providers=["CPUExecutionProvider"])
    for b in (1, 3):
        x = np.random.default_rng(b).standard_normal((b, 3, 128, 128)).astype(np.float32)
        f = tmp_path / f"images{b}.npy"
        np.save(f, x)
        kiln("run", plan, "--input", f"images={f}", "--outdir", tmp_path / f"o{b}")
        for name, ref in zip(("bbox_regression", "cls_logits"), sess.run(None, {"images": x})):
            got = np.load(tmp_path / f"o{b}" / f"{name}.npy")
            assert got.shape == ref.shape and rel_error(got, ref) < tol, (b, name, rel_error(got, ref))


def test_seed_ssd_profile_matches_onnxruntime(tmp_path):
    plan = tmp_path / "ssd.plan"
    kiln("build", SEED_MODEL, "-o", plan, "--min-batch", 1, "--opt-batch", 2, "--max-batch", 4)
    seed_ssd_matches(plan, tmp_path, 1e-5)


def test_int8_profile_calibrates_at_the_opt_batch(model, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):  # batches at the opt batch (4)
        np.save(calib / f"b{i}.npy", np.random.default_rng(50 + i).standard_normal((4, 3, 8, 8)).astype(np.float32))
    plan = build_profile(model, tmp_path / "int8.plan", "--int8", "--calib", calib, "--calib-method", "minmax")
    text = kiln("inspect", plan).stdout
    assert "kiln::QConv" in text
    assert "scales from calibration (minmax) at batch 4" in text
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for b in (1, 3, 8):
        x = np.random.default_rng(b).standard_normal((b, 3, 8, 8)).astype(np.float32)
        got = run_at(plan, x, tmp_path / f"q{b}")
        assert rel_error(got, sess.run(None, {"x": x})[0]) < 0.05, b


def test_batches_outside_the_profile_are_refused(model, tmp_path):
    plan = build_profile(model, tmp_path / "dyn.plan")
    for b in (9, 0):
        r = kiln("run", plan, "--random-inputs", 1, "--batch", b, "--outdir", tmp_path / "o", check=False)
        one_line_error(r, 2, "--batch")
    r = kiln("run", plan, "--random-inputs", 1, "--batch", 9, "--outdir", tmp_path / "o", check=False)
    one_line_error(r, 2, "outside the plan's batch profile [1, 8]")
    # A file of batch 9 reaches the engine, which names the input and the range.
    f = tmp_path / "x9.npy"
    np.save(f, np.zeros((9, 3, 8, 8), np.float32))
    r = kiln("run", plan, "--input", f"x={f}", "--outdir", tmp_path / "o", check=False)
    one_line_error(r, 3, "input 'x' has batch 9", "[1, 8]")
    # A single-batch plan runs its own batch only.
    single = tmp_path / "single.plan"
    kiln("build", model, "-o", single, "--batch", 2)
    r = kiln("run", single, "--random-inputs", 1, "--batch", 3, "--outdir", tmp_path / "o", check=False)
    one_line_error(r, 2, "runs batch 2 only")


def test_inspect_and_bench_show_the_profile(model, tmp_path):
    plan = build_profile(model, tmp_path / "dyn.plan")
    text = kiln("inspect", plan).stdout
    assert "batch profile: min 1, opt 4, max 8 (specializations at batch 1, 2, 4, 8" in text
    assert "x fp32[N=8,3,8,8]" in text
    info = json.loads(kiln("inspect", plan, "--json").stdout)
    assert info["batch_profile"] == {"min": 1, "opt": 4, "max": 8, "batches": [1, 2, 4, 8]}
    bench = json.loads(kiln("bench", plan, "--batch", 5, "--iterations", 3, "--warmup", 1, "--json").stdout)
    assert bench["batch"] == 5 and bench["batch_profile"] == {"min": 1, "opt": 4, "max": 8, "specialization": 8}
    # Single-batch plans show no profile.
    single = tmp_path / "single.plan"
    kiln("build", model, "-o", single)
    assert "batch profile" not in kiln("inspect", single).stdout
    assert "batch_profile" not in json.loads(kiln("inspect", single, "--json").stdout)


def test_models_a_profile_cannot_serve_are_refused(tmp_path):
    model = dynamic_model(tmp_path / "batchless.onnx", batchless_output=True)
    r = kiln("build", model, "-o", tmp_path / "p.plan", *PROFILE, check=False)
    one_line_error(r, 4, "output 'total'", "no batch axis")
    assert not (tmp_path / "p.plan").exists()
    fixed = dynamic_model(tmp_path / "fixed.onnx", batch=2)
    r = kiln("build", fixed, "-o", tmp_path / "p.plan", *PROFILE, check=False)
    one_line_error(r, 2, "the model has no batch dimension")


def test_profile_flags_are_checked(model, tmp_path):
    out = tmp_path / "p.plan"
    cases = [
        (("--min-batch", 1, "--max-batch", 8), "give all three"),
        (("--min-batch", 4, "--opt-batch", 2, "--max-batch", 8), "min <= opt <= max"),
        ((*PROFILE, "--batch", 2), "give one or the other"),
    ]
    for flags, needle in cases:
        r = kiln("build", model, "-o", out, *flags, check=False)
        one_line_error(r, 2, needle)
    assert not out.exists()


@needs_gpu
@pytest.mark.parametrize("flags,tol", [((), 1e-3), (("--fp16",), 1e-2)], ids=["fp32", "fp16"])
def test_gpu_profile_matches_onnxruntime_at_every_batch(model, tmp_path, flags, tol):
    plan = build_profile(model, tmp_path / "dyn.plan", "--device", "cuda", *flags)
    assert "kiln plan for cuda:" in kiln("inspect", plan).stdout
    check_batches(model, plan, tmp_path, tol)


@needs_gpu
def test_gpu_seed_ssd_profile_fp16(tmp_path):
    plan = tmp_path / "ssd.plan"
    kiln("build", SEED_MODEL, "-o", plan, "--min-batch", 1, "--opt-batch", 2, "--max-batch", 4, "--device", "cuda",
         "--fp16")
    seed_ssd_matches(plan, tmp_path, 1e-2)


@needs_gpu
def test_gpu_profile_bench_and_retune(model, tmp_path):
    plan = build_profile(model, tmp_path / "dyn.plan", "--device", "cuda")
    # Every batch is timed on the device (set_batch), transfers of its own rows apart.
    top = json.loads(kiln("bench", plan, "--batch", 8, "--iterations", 5, "--warmup", 1, "--json").stdout)
    assert top["batch"] == 8 and "h2d_ms" in top and top["batch_profile"]["specialization"] == 8
    mid = json.loads(kiln("bench", plan, "--batch", 3, "--iterations", 5, "--warmup", 1, "--json", "--profile").stdout)
    assert mid["batch"] == 3 and "h2d_ms" in mid and mid["batch_profile"]["specialization"] == 4
    assert mid["layers"] and mid["throughput_per_s"] > 0
    retuned = tmp_path / "retuned.plan"
    r = kiln("build", "--from-plan", plan, "-o", retuned, "--device", "cuda")
    assert "batch profile: min 1, opt 4, max 8" in r.stdout
    check_batches(model, retuned, tmp_path / "retuned", 1e-3)
