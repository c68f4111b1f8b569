"""CPU latency, kiln vs onnxruntime, measured in one run on this machine.

    python3 bench/cpu_latency.py [--models mobilenet_v2,ssdlite320_mnv3] [--iters 50] [--json OUT]

For each model: fill its weights (tests/models/fill_weights.py), build a kiln
plan (optimized and, with --no-opt, unoptimized), time `kiln bench`, then time
onnxruntime (graph optimizations off and all) on the same file with the same
thread count. Prints a table and one JSON line per measurement.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models"))
import fill_weights  # noqa: E402

KILN = os.environ.get("KILN_BIN", str(ROOT / "build" / "kiln"))


def model_file(name, workdir):
    if name == "seed_cbr_ssd":
        return ROOT / "tests" / "models" / "seed_cbr_ssd.onnx"
    return Path(fill_weights.fill(str(ROOT / "tests" / "models" / "graphs" / f"{name}.onnx"),
                                  str(Path(workdir) / f"{name}.onnx")))


def kiln_latency(model, workdir, iters, threads, no_opt=False):
    plan = Path(workdir) / (model.stem + (".noopt" if no_opt else "") + ".plan")
    t0 = time.time()
    subprocess.run([KILN, "build", str(model), "-o", str(plan)] + (["--no-opt"] if no_opt else []),
                   check=True, capture_output=True)
    build_s = time.time() - t0
    env = dict(os.environ, KILN_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    r = subprocess.run([KILN, "bench", str(plan), "--warmup", "10", "--iterations", str(iters), "--json"],
                       check=True, capture_output=True, text=True, env=env)
    res = json.loads(r.stdout)
    return res["median_ms"], res["min_ms"], build_s


def ort_latency(model, iters, threads, level):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = level
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([1] + list(inp.shape[1:])).astype(np.float32)
    for _ in range(10):
        sess.run(None, {inp.name: x})
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        ts.append((time.perf_counter() - t) * 1e3)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,ssdlite320_mnv3")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-opt", action="store_true", help="also time kiln without graph passes")
    ap.add_argument("--json", help="append JSON lines here")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as wd:
        for name in a.models.split(","):
            model = model_file(name, wd)
            variants = [("kiln", False)] + ([("kiln --no-opt", True)] if a.no_opt else [])
            for label, no_opt in variants:
                med, mn, build_s = kiln_latency(model, wd, a.iters, a.threads, no_opt)
                rows.append(dict(model=name, engine=label, median_ms=med, min_ms=mn, build_s=round(build_s, 2)))
            for label, level in (("onnxruntime opt=all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                                 ("onnxruntime opt=disabled", ort.GraphOptimizationLevel.ORT_DISABLE_ALL)):
                med, mn = ort_latency(model, a.iters, a.threads, level)
                rows.append(dict(model=name, engine=label, median_ms=med, min_ms=mn))
    meta = dict(machine=platform.processor() or platform.machine(), threads=a.threads, ort=ort.__version__,
                date=time.strftime("%Y-%m-%d"))
    print(f"{'model':18} {'engine':26} {'median ms':>10} {'min ms':>8}")
    for r in rows:
        print(f"{r['model']:18} {r['engine']:26} {r['median_ms']:10.3f} {r['min_ms']:8.3f}")
        line = json.dumps({**r, **meta})
        if a.json:
            with open(a.json, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
