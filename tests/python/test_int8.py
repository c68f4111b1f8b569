"""INT8 calibration through the bindings: kiln.Calibrator subclassed in
Python, kiln.calibrate, Builder(int8=True, ...) and kiln.export_qdq_onnx,
checked against numpy / onnxruntime and against the `kiln calibrate` CLI."""
import gc
import os
import pathlib
import re
import subprocess
import sys
import threading
import weakref

import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402

from conftest import REPO, SEED_MODEL, ort_run  # noqa: E402
from int8_support import (INT8_BOUND, ListCalibrator, int8_layers, make_batches, ort_activations,  # noqa: E402
                          rel_l2, run_plan)

sys.path.insert(0, str(REPO / "tests" / "quant"))  # thresholds_reference.py


# ---- (1) scales against numpy -------------------------------------------------------


def test_minmax_scales_are_max_abs_over_127(exact_model):
    arrays = make_batches(4, exact=True)
    scales = kiln.calibrate(kiln.parse_onnx(exact_model), ListCalibrator(arrays), method="minmax")
    assert isinstance(scales, dict) and all(isinstance(v, float) for v in scales.values())

    values = ort_activations(exact_model, arrays)
    common = set(scales) & set(values)
    # The activations every Conv reads must be among the calibrated tensors.
    assert {"x", "r1", "r2"} <= common, (sorted(scales), sorted(values))
    for name in sorted(common):
        want = np.float32(float(np.abs(values[name].astype(np.float64)).max()) / 127.0)
        assert scales[name] == float(want), (name, scales[name], float(want))


def reference_threshold(values, method, pct):
    """Threshold of tests/quant/thresholds_reference.py over the histogram
    src/quant/histogram.h describes: 2048 bins of |x| over [0, 2^e), 2^e
    the smallest power of two above max |x|."""
    ref = pytest.importorskip("thresholds_reference")
    v = values.astype(np.float64)
    amax = float(np.abs(v).max())
    assert amax > 0
    e = int(np.floor(np.log2(amax))) + 1
    while 2.0 ** (e - 1) > amax:
        e -= 1
    while 2.0 ** e <= amax:
        e += 1
    width = 2.0 ** e / 2048
    hist = np.bincount(np.floor(np.abs(v) / width).astype(np.int64), minlength=2048).astype(np.uint64)
    return ref.percentile(hist, width, pct) if method == "percentile" else ref.entropy(hist, width)[1]


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_scales_match_reference(exact_model, method):
    arrays = make_batches(4, exact=True)
    scales = kiln.calibrate(kiln.parse_onnx(exact_model), ListCalibrator(arrays), method=method, percentile=99.0)
    values = ort_activations(exact_model, arrays)
    common = set(scales) & set(values)
    assert {"x", "r1", "r2"} <= common
    for name in sorted(common):
        want = np.float32(reference_threshold(values[name], method, 99.0) / 127.0)
        assert scales[name] == float(want), (name, scales[name], float(want))


def test_strided_batches_match_contiguous_ones(exact_model):
    arrays = make_batches(3, exact=True)
    # Same values, laid out with other strides (Fortran order, a transposed view).
    strided = [np.asfortranarray(arrays[0]), arrays[1].transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2),
               np.ascontiguousarray(arrays[2][:, ::-1])[:, ::-1]]
    assert not any(a.flags.c_contiguous for a in strided)
    net = kiln.parse_onnx(exact_model)
    want = kiln.calibrate(net, ListCalibrator(arrays), method="minmax")
    assert kiln.calibrate(net, ListCalibrator(strided), method="minmax") == want


# ---- (2) INT8 build against onnxruntime FP32 ----------------------------------------


def test_int8_cpu_build_matches_onnxruntime(gauss_model):
    arrays = make_batches(8, exact=False)
    net = kiln.parse_onnx(gauss_model)
    builder = kiln.Builder(device="cpu", int8=True, calibrator=ListCalibrator(arrays), calib_method="minmax")
    assert builder.int8 and builder.calib_method == "minmax" and isinstance(builder.calibrator, ListCalibrator)
    plan = builder.build(net)
    assert {"conv1", "conv2", "conv3"} <= set(int8_layers(plan)), int8_layers(plan)

    x = make_batches(1, exact=False, seed=99)[0]  # not a calibration batch
    got = run_plan(plan, x)
    want = ort_run(gauss_model, {"x": x})["y"]
    err = rel_l2(got, want)
    assert err < INT8_BOUND, err
    # FP32 kernels would be within ~1e-6: this really ran in INT8.
    assert err > 1e-5, err


def test_keep_float_layers_stay_fp32(gauss_model):
    arrays = make_batches(4, exact=False)
    plan = kiln.Builder(int8=True, calibrator=ListCalibrator(arrays), calib_method="minmax",
                        keep_float_layers=["conv2"]).build(kiln.parse_onnx(gauss_model))
    layers = int8_layers(plan)
    assert "conv2" not in layers and "conv1" in layers, layers
    x = make_batches(1, exact=False, seed=98)[0]
    assert rel_l2(run_plan(plan, x), ort_run(gauss_model, {"x": x})["y"]) < INT8_BOUND


# ---- (3) cache bytes against the CLI ------------------------------------------------


def kiln_cli():
    """The kiln CLI binary, as tests/e2e/conftest.py finds it: $KILN_BIN, else build/kiln."""
    path = pathlib.Path(os.environ.get("KILN_BIN", str(REPO / "build" / "kiln")))
    if not path.is_file():
        pytest.skip(f"kiln CLI not found at {path} (set KILN_BIN): cache comparison with `kiln calibrate` skipped")
    r = subprocess.run([str(path), "calibrate", "--help"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        pytest.skip(f"{path} has no `calibrate` command (an older build?): cache comparison skipped")
    return str(path)


def python_cache(model, arrays, method, path):
    scales = kiln.calibrate(kiln.parse_onnx(model), ListCalibrator(arrays), method=method, percentile=99.0,
                            cache=path)
    assert path.is_file()
    return scales


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_builder_writes_and_reads_the_same_cache(exact_model, tmp_path, method):
    arrays = make_batches(4, exact=True)
    py_cache = tmp_path / "py.cache"
    scales = python_cache(exact_model, arrays, method, py_cache)
    assert py_cache.read_text().startswith("KILN-1-")
    # The builder writes the same cache when it calibrates.
    built_cache = tmp_path / "built.cache"
    net = kiln.parse_onnx(exact_model)
    kiln.Builder(int8=True, calibrator=ListCalibrator(arrays), calib_method=method, calib_percentile=99.0,
                 calib_cache=str(built_cache)).build(net)
    assert built_cache.read_bytes() == py_cache.read_bytes()
    # Read back without a calibrator: the same scales.
    assert kiln.calibrate(net, cache=str(py_cache)) == scales


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
def test_cache_equals_cli_cache(exact_model, tmp_path, method):
    cli = kiln_cli()  # skips, saying why, when there is no CLI binary
    arrays = make_batches(4, exact=True)
    py_cache = tmp_path / "py.cache"
    python_cache(exact_model, arrays, method, py_cache)
    folder = tmp_path / "calib"
    folder.mkdir()
    for k, a in enumerate(arrays):
        np.save(folder / f"batch{k:03d}.npy", a)
    cli_cache = tmp_path / "cli.cache"
    args = [cli, "calibrate", exact_model, "--calib", str(folder), "--calib-method", method,
            "--calib-cache", str(cli_cache)]
    if method == "percentile":
        args += ["--calib-percentile", "99.0"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert cli_cache.read_bytes() == py_cache.read_bytes()


def test_build_from_cache_alone_matches_build_with_calibrator(gauss_model, tmp_path):
    arrays = make_batches(4, exact=False)
    net = kiln.parse_onnx(gauss_model)
    cache = tmp_path / "g.cache"
    with_data = kiln.Builder(int8=True, calibrator=ListCalibrator(arrays), calib_method="minmax",
                             calib_cache=str(cache)).build(net)
    from_cache = kiln.Builder(int8=True, calib_cache=str(cache)).build(net)
    x = make_batches(1, exact=False, seed=97)[0]
    np.testing.assert_array_equal(run_plan(from_cache, x), run_plan(with_data, x))


# ---- (6) the INT8 guard needs a calibrator that rewinds -----------------------------


def test_int8_guard_refuses_calibrator_that_cannot_rewind(gauss_model):
    cal = ListCalibrator(make_batches(4, exact=False), can_rewind=False)
    builder = kiln.Builder(int8=True, calibrator=cal, int8_guard=True)
    with pytest.raises(kiln.UsageError, match="rewind"):
        builder.build(kiln.parse_onnx(gauss_model))


def test_int8_guard_with_rewinding_calibrator(gauss_model):
    cal = ListCalibrator(make_batches(4, exact=False))
    builder = kiln.Builder(int8=True, calibrator=cal, calib_method="minmax", int8_guard=True,
                           int8_guard_bound=0.03)
    assert builder.int8_guard and builder.int8_guard_bound == 0.03
    plan = builder.build(kiln.parse_onnx(gauss_model))
    assert cal.rewinds >= 1  # the Python rewind() was called
    x = make_batches(1, exact=False, seed=96)[0]
    assert rel_l2(run_plan(plan, x), ort_run(gauss_model, {"x": x})["y"]) < INT8_BOUND


# ---- Q/DQ export -------------------------------------------------------------------


def test_export_qdq_onnx_runs_in_onnxruntime(gauss_model, tmp_path):
    net = kiln.parse_onnx(gauss_model)
    scales = kiln.calibrate(net, ListCalibrator(make_batches(8, exact=False)), method="minmax")
    out = tmp_path / "gauss.qdq.onnx"
    kiln.export_qdq_onnx(gauss_model, scales, out)

    m = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    quantized = {}
    for n in m.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[1] in inits:
            quantized[n.input[0]] = float(inits[n.input[1]].reshape(-1)[0])
    # Every activation a Conv reads is quantized with the scale given.
    for name in ("x", "r1", "r2"):
        assert name in quantized, sorted(quantized)
        assert quantized[name] == scales[name], (name, quantized[name], scales[name])

    x = make_batches(1, exact=False, seed=95)[0]
    want = ort_run(gauss_model, {"x": x})["y"]
    assert rel_l2(ort_run(out, {"x": x})["y"], want) < INT8_BOUND
    # kiln builds the Q/DQ model as explicit quantization, without a calibrator.
    plan = kiln.Builder(int8=True).build(kiln.parse_onnx(str(out)))
    assert int8_layers(plan)
    assert rel_l2(run_plan(plan, x), want) < INT8_BOUND


# ---- threads and lifetimes ---------------------------------------------------------


def test_threads_calibrate_concurrently(exact_model):
    # calibrate() drops the GIL and each callback takes it back: several
    # threads at once must each get their own right answer.
    net = kiln.parse_onnx(exact_model)
    sets = [make_batches(3, exact=True, seed=s) for s in range(4)]
    want = [kiln.calibrate(net, ListCalibrator(a), method="minmax") for a in sets]
    got = [None] * len(sets)

    def work(i):
        got[i] = kiln.calibrate(net, ListCalibrator(sets[i]), method="minmax")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(sets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_builder_keeps_calibrator_alive_and_cycles_are_collected(gauss_model):
    cal = ListCalibrator(make_batches(2, exact=False))
    ref = weakref.ref(cal)
    builder = kiln.Builder(int8=True, calibrator=cal, calib_method="minmax")
    del cal
    gc.collect()
    assert ref() is not None  # the Builder holds it
    assert int8_layers(builder.build(kiln.parse_onnx(gauss_model)))

    builder.calibrator.owner = builder  # a cycle through the Builder
    del builder
    gc.collect()
    assert ref() is None


# ---- README example ----------------------------------------------------------------


def readme_int8_example():
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    found = [b for b in blocks if "kiln.Calibrator" in b]
    assert len(found) == 1, "README.md should hold one Python INT8 example"
    return found[0]


def test_readme_int8_example(tmp_path, monkeypatch):
    import shutil

    shutil.copy(SEED_MODEL, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(readme_int8_example(), "README.md", "exec"), scope)
    assert (tmp_path / "model.calib").is_file() and (tmp_path / "model.qdq.onnx").is_file()
    assert int8_layers(scope["plan"])
    x = scope["batches"][0]
    outputs = kiln.Runtime().deserialize(scope["plan"]).create_context().run({"images": x})
    qdq = ort_run(tmp_path / "model.qdq.onnx", {"images": x})
    assert set(outputs) == set(qdq)


# ---- GPU ---------------------------------------------------------------------------


def test_int8_cuda_build_matches_onnxruntime(gauss_model):
    net = kiln.parse_onnx(gauss_model)
    cal = ListCalibrator(make_batches(8, exact=False))
    try:
        # Forced: on a model this small float wins every timing, and this checks the INT8 kernels.
        plan = kiln.Builder(device="cuda", int8=True, calibrator=cal, calib_method="minmax",
                            int8_layers=["*"]).build(net)
    except kiln.UnsupportedError as e:
        # Only "no backend" and "no GPU" skip; anything else is a failure.
        if "built without the CUDA backend" in str(e) or "no CUDA device" in str(e):
            pytest.skip(f"no CUDA engine here: {e}")
        raise
    engine = kiln.Runtime().deserialize(plan)
    assert engine.device.startswith("cuda")
    assert int8_layers(plan)
    x = make_batches(1, exact=False, seed=94)[0]
    got = engine.create_context().run({"x": x})["y"]
    assert rel_l2(got, ort_run(gauss_model, {"x": x})["y"]) < INT8_BOUND


def test_summary_shows_int8_layers_and_their_scales(exact_model):
    arrays = make_batches(4, exact=True)
    net = kiln.parse_onnx(exact_model)
    scales = kiln.calibrate(net, ListCalibrator(arrays), method="minmax")
    plan = kiln.Builder(int8=True, calibrator=ListCalibrator(arrays), calib_method="minmax").build(net)
    s = kiln.Runtime().deserialize(plan).summary()
    qconvs = [l for l in s.layers if l.op_type == "kiln::QConv"]
    assert qconvs and s.int8.startswith(f"{len(qconvs)} conv layers INT8")
    quant = [l for l in s.layers if l.name.startswith("quantize:")]
    assert quant and quant[0].int8_scales == f"scale {scales['x']:.6g}"
    assert all(l.int8_scales.startswith("x ") for l in qconvs)
