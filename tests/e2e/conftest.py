"""Shared helpers for the end-to-end tests: the kiln CLI, test models, oracles."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "models"))
import fill_weights  # noqa: E402

KILN = os.environ.get("KILN_BIN", str(ROOT / "build" / "kiln"))
GRAPHS = ROOT / "tests" / "models" / "graphs"
CACHE = ROOT / "build" / "test-models"
SEED_MODEL = ROOT / "tests" / "models" / "seed_cbr_ssd.onnx"


def kiln(*args, check=True, timeout=900):
    r = subprocess.run([KILN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"kiln {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return r


def one_line_error(r, code, *needles):
    """Asserts `r` failed with exit `code` and one stderr line naming every needle."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kiln: error:"), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def model_path(name, seed=0):
    """A torchvision graph from tests/models/graphs with weights filled from `seed` (cached)."""
    src = GRAPHS / f"{name}.onnx"
    key = hashlib.sha1(src.read_bytes() + Path(fill_weights.__file__).read_bytes()).hexdigest()[:10]
    out = CACHE / f"{name}.seed{seed}.{key}.onnx"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        fill_weights.fill(str(src), str(tmp), seed)
        os.replace(tmp, out)
    return out


def rel_error(got, ref):
    """max |got - ref| / max |ref|: error relative to the tensor's scale."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(float(np.abs(ref).max()), 1e-30) if ref.size else 1.0
    return float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()) / scale if ref.size else 0.0


def run_kiln_model(model, inputs, tmp_path, batch=None, extra_build=()):
    """Build `model` into a plan, run it on `inputs` (name -> array) through the CLI, return outputs."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    plan = tmp_path / "model.plan"
    args = ["build", model, "-o", plan, *extra_build]
    if batch:
        args += ["--batch", batch]
    kiln(*args)
    run = ["run", plan, "--outdir", tmp_path / "out"]
    for k, (name, arr) in enumerate(inputs.items()):
        f = tmp_path / f"input{k}.npy"
        np.save(f, arr)
        run += ["--input", f"{name}={f}"]
    kiln(*run)
    return {p.stem: np.load(p) for p in (tmp_path / "out").glob("*.npy")}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
