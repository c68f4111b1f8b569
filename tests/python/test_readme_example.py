"""The Python example of the README, run as written on the seed model (so the
snippet keeps working), with its outputs checked against onnxruntime."""
import shutil

import numpy as np
import pytest

kiln = pytest.importorskip("kiln")
from conftest import SEED_MODEL, ort_run  # noqa: E402

# Keep identical to the README's "Python" section.
README_EXAMPLE = """
import numpy as np
import kiln

net = kiln.parse_onnx("model.onnx", batch=1)     # ONNX -> kiln network
plan = kiln.Builder(device="cpu").build(net)      # optimize, pick kernels -> plan (bytes)
kiln.write_plan("model.plan", plan)               # the file `kiln run` loads too
engine = kiln.Runtime().load("model.plan")        # needs no ONNX file
ctx = engine.create_context()
x = np.random.rand(*engine.inputs[0].shape).astype(engine.inputs[0].dtype)
outputs = ctx.run({engine.inputs[0].name: x})     # {output name: np.ndarray}
print({name: a.shape for name, a in outputs.items()})
"""


def test_readme_example(tmp_path, monkeypatch, capsys):
    shutil.copy(SEED_MODEL, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(README_EXAMPLE, "README.md", "exec"), scope)
    assert (tmp_path / "model.plan").is_file()
    printed = capsys.readouterr().out
    assert "bbox_regression" in printed and "cls_logits" in printed

    want = ort_run(tmp_path / "model.onnx", {"images": scope["x"]})
    for name, ref in want.items():
        got = scope["outputs"][name]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()), err_msg=name)
