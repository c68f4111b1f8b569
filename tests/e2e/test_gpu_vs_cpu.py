"""Whole models on the GPU (kiln build --device cuda, FP32 and FP16) against
kiln's CPU engine, the reference, on the same weights and random inputs.
Skipped where no CUDA device is visible (CI); run on a GPU machine."""
import shutil
import subprocess

import numpy as np
import onnx
import pytest

from conftest import SEED_MODEL, model_path, rel_error, run_kiln_model


def gpu_present():
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not gpu_present(), reason="no CUDA device")

# (model, batch); the detectors' heads end in Reshape/Transpose/Concat, which
# exercises the layout changes around channels-last convolutions.
CASES = [
    ("seed_cbr_ssd", 2),
    ("resnet18_bn", 1),
    ("mobilenet_v2", 1),
    ("resnet50", 2),
    ("ssdlite320_mnv3", 1),
    ("ssd300_vgg16", 1),
    ("retinanet_r50_fpn", 1),
]
# FP32 without TF32 stays near CPU rounding; FP16 storage with FP32 accumulation.
PRECISIONS = [("fp32", (), 1e-3), ("fp16", ("--fp16",), 1e-2)]
_reference = {}


def reference(name, batch, tmp_path_factory):
    """The model file, its input and the CPU engine's outputs (computed once per model)."""
    if name not in _reference:
        model = str(SEED_MODEL if name == "seed_cbr_ssd" else model_path(name))
        inp = onnx.load(model, load_external_data=False).graph.input[0]
        shape = [batch] + [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
        x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
        ref = run_kiln_model(model, {inp.name: x}, tmp_path_factory.mktemp("cpu"), batch=batch)
        _reference[name] = (model, {inp.name: x}, ref)
    return _reference[name]


@pytest.mark.parametrize("prec,flags,tol", PRECISIONS, ids=[p[0] for p in PRECISIONS])
@pytest.mark.parametrize("name,batch", CASES, ids=[c[0] for c in CASES])
def test_gpu_matches_cpu(name, batch, prec, flags, tol, tmp_path, tmp_path_factory):
    model, inputs, ref = reference(name, batch, tmp_path_factory)
    got = run_kiln_model(model, inputs, tmp_path, batch=batch, extra_build=("--device", "cuda", *flags))
    assert set(got) == set(ref)
    for k in ref:
        assert np.isfinite(got[k]).all(), f"{name}:{k} {prec} has non-finite values"
        err = rel_error(got[k], ref[k])
        assert err <= tol, f"{name}:{k} {prec} relative error {err:.3g} > {tol}"
