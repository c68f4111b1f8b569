"""Whole models through kiln's CPU engine (build -> plan -> run, via the CLI)
against onnxruntime on the same weights and random inputs."""
import numpy as np
import onnxruntime as ort
import pytest

from conftest import SEED_MODEL, model_path, rel_error, run_kiln_model

# (model, batch): torchvision exports (BatchNorm folded by the exporter, or kept
# explicit in the *_bn variants) and the seed Conv-BN-ReLU SSD model.
CASES = [
    ("mobilenet_v2", 1),
    ("resnet18", 1),
    ("resnet18_bn", 1),
    ("ssdlite320_mnv3", 1),
    ("ssdlite320_mnv3_bn", 2),
    ("seed_cbr_ssd", 2),
]


def model_file(name):
    return SEED_MODEL if name == "seed_cbr_ssd" else model_path(name)


@pytest.mark.parametrize("name,batch", CASES)
def test_model_matches_onnxruntime(name, batch, tmp_path, rng):
    model = str(model_file(name))
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [batch] + list(inp.shape[1:])
    x = rng.standard_normal(shape).astype(np.float32)
    ref = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: x})))
    got = run_kiln_model(model, {inp.name: x}, tmp_path, batch=batch)
    assert set(got) == set(ref)
    for k in ref:
        err = rel_error(got[k], ref[k])
        assert err <= 1e-4, f"{name}:{k} relative error {err:.3g}"
