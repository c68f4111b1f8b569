"""GPU engines through the bindings (skipped without the CUDA backend or a GPU):
run() against onnxruntime, and device_address()/enqueue() with the buffers
moved by the CUDA runtime through ctypes."""
import ctypes
import ctypes.util
import glob

import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
from conftest import ort_run  # noqa: E402


@pytest.fixture
def cuda_plan(tiny_model):
    net = kiln.parse_onnx(tiny_model)
    try:
        return kiln.Builder(device="cuda").build(net)
    except kiln.UnsupportedError as e:
        # Only "no backend" and "no GPU" skip; anything else is a failure.
        if "built without the CUDA backend" in str(e) or "no CUDA device" in str(e):
            pytest.skip(f"no CUDA engine here: {e}")
        raise


def load_cudart():
    names = [ctypes.util.find_library("cudart")] + sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))
    for name in filter(None, names):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    pytest.skip("libcudart not found for ctypes")


def test_cuda_run_matches_onnxruntime(cuda_plan, tiny_model, rng):
    engine = kiln.Runtime().deserialize(cuda_plan)
    assert engine.device.startswith("cuda")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    got = engine.create_context().run({"x": x})
    want = ort_run(tiny_model, {"x": x})
    np.testing.assert_allclose(got["probs"], want["probs"], rtol=1e-3, atol=1e-5)
    np.testing.assert_array_equal(got["label"], want["label"])


def test_cuda_enqueue_on_device_buffers(cuda_plan, tiny_model, rng):
    cudart = load_cudart()
    ctx = kiln.Runtime().deserialize(cuda_plan).create_context()
    x_dev, probs_dev = ctx.device_address("x"), ctx.device_address("probs")
    assert x_dev != 0 and probs_dev != 0
    assert ctx.device_address("no_such_tensor") == 0

    x = rng.standard_normal((2, 8)).astype(np.float32)
    probs = np.zeros((2, 4), np.float32)
    memcpy = cudart.cudaMemcpy
    memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert memcpy(x_dev, x.ctypes.data, x.nbytes, 1) == 0  # host to device
    ctx.enqueue()  # the context's own stream
    assert cudart.cudaDeviceSynchronize() == 0
    assert memcpy(probs.ctypes.data, probs_dev, probs.nbytes, 2) == 0  # device to host
    np.testing.assert_allclose(probs, ort_run(tiny_model, {"x": x})["probs"], rtol=1e-3, atol=1e-5)


def test_cuda_device_tensor_dlpack(cuda_plan, tiny_model, rng):
    ctx = kiln.Runtime().deserialize(cuda_plan).create_context()
    x = rng.standard_normal((2, 8)).astype(np.float32)
    ctx.run({"x": x})  # leaves the outputs in the device buffers
    view = ctx.device_tensor("probs")
    assert view.__dlpack_device__()[0] == 2  # kDLCUDA
    want = ort_run(tiny_model, {"x": x})["probs"]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        t = torch.from_dlpack(view)
        assert tuple(t.shape) == (2, 4) and t.is_cuda
        got = t.cpu().numpy()
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
        return
    cudart = load_cudart()
    probs = np.zeros((2, 4), np.float32)
    memcpy = cudart.cudaMemcpy
    memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert memcpy(probs.ctypes.data, ctx.device_address("probs"), probs.nbytes, 2) == 0
    np.testing.assert_allclose(probs, want, rtol=1e-3, atol=1e-5)


def test_cuda_profile_set_batch_and_dlpack(dynamic_model, rng):
    try:
        plan = kiln.Builder(device="cuda").build_profile(dynamic_model, 1, 4, 8)
    except kiln.UnsupportedError as e:
        if "built without the CUDA backend" in str(e) or "no CUDA device" in str(e):
            pytest.skip(f"no CUDA engine here: {e}")
        raise
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device for the DLPack views")
    ctx = kiln.Runtime().deserialize(plan).create_context()
    for n, rows in ((3, 4), (8, 8), (2, 2)):
        assert ctx.set_batch(n) == rows
        x_dev = torch.from_dlpack(ctx.device_tensor("x"))
        assert tuple(x_dev.shape) == (rows, 8)
        x = rng.standard_normal((n, 8)).astype(np.float32)
        x_dev[:n].copy_(torch.from_numpy(x))
        torch.cuda.synchronize()
        ctx.enqueue()
        torch.cuda.synchronize()
        probs = torch.from_dlpack(ctx.device_tensor("probs"))[:n].cpu().numpy()
        want = ort_run(dynamic_model, {"x": x})["probs"]
        np.testing.assert_allclose(probs, want, rtol=1e-3, atol=1e-5)
