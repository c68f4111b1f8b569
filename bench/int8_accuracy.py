"""INT8 against FP32: how far kiln's INT8 engines land from onnxruntime FP32
on the same inputs, per calibration method, with and without the
sensitivity guard, on the CPU and (when `--device cuda` works) the GPU.

Models are the torchvision graphs of tests/models/graphs with weights filled
from a seed (tests/models/fill_weights.py: random, each layer normalized like
a trained net). Calibration and evaluation inputs are standard-normal
tensors drawn from different seeds. Errors are relative L2 norms,
||kiln - onnxruntime|| / ||onnxruntime||, over every evaluation input, per
output; the table shows the worst output.

    python3 bench/int8_accuracy.py --models resnet50,ssdlite320_mnv3 [--devices cpu,cuda] [--out DIR]

On the GPU the INT8 configurations force every layer with a scale to INT8
(`--int8-layer '*'`), so they run the same INT8 layers as the CPU.
The table is also written to DIR/table.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import model_path  # noqa: E402

KILN = os.environ.get("KILN_BIN", str(ROOT / "build" / "kiln"))


def kiln(*args):
    r = subprocess.run([KILN, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(map(str, args))}: {r.stderr.strip()}")
    return r.stdout


def rel_l2(got, ref):
    return float(np.linalg.norm(got.astype(np.float64) - ref) / max(np.linalg.norm(ref), 1e-30))


def run_plan(plan, name, xs, work):
    work.mkdir(parents=True, exist_ok=True)
    outs = []
    for k, x in enumerate(xs):
        f = work / f"x{k}.npy"
        np.save(f, x)
        d = work / f"out{k}"
        kiln("run", plan, "--input", f"{name}={f}", "--outdir", d)
        outs.append({p.stem: np.load(p) for p in d.glob("*.npy")})
    return outs


def errors(got, ref):
    """Worst output's relative L2 error over all evaluation inputs."""
    worst = 0.0
    for key in ref[0]:
        g = np.concatenate([o[key].ravel() for o in got])
        r = np.concatenate([o[key].ravel().astype(np.float64) for o in ref])
        worst = max(worst, rel_l2(g, r))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,ssdlite320_mnv3")
    ap.add_argument("--devices", default="cpu")
    ap.add_argument("--calib-batches", type=int, default=8)
    ap.add_argument("--eval", type=int, default=4)
    ap.add_argument("--guard-bound", type=float, default=0.01)
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kiln-int8"))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in a.models.split(","):
        model = str(model_path(name))
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [1] + list(inp.shape[1:])
        work = out / name
        cal = work / "calib"
        cal.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        for k in range(a.calib_batches):
            np.save(cal / f"b{k:03d}.npy", rng.standard_normal(shape).astype(np.float32))
        erng = np.random.default_rng(1)
        xs = [erng.standard_normal(shape).astype(np.float32) for _ in range(a.eval)]
        names = [o.name for o in sess.get_outputs()]
        ref = [dict(zip(names, sess.run(None, {inp.name: x}))) for x in xs]
        for device in a.devices.split(","):
            configs = [("fp32", [])]
            if device == "cuda":
                configs.append(("fp16", ["--fp16"]))
            # The GPU keeps INT8 only where it times faster; forcing every
            # layer with a scale makes its INT8 layers the CPU's, so the two
            # INT8 kernels' agreement is what the last column shows.
            forced = ["--int8-layer", "*"] if device == "cuda" else []
            for method in ("entropy", "minmax", "percentile"):
                configs.append((f"int8 {method}", ["--int8", "--calib", cal, "--calib-method", method, *forced]))
            configs.append((f"int8 entropy + guard {a.guard_bound:g}",
                            ["--int8", "--calib", cal, "--int8-guard", "--int8-guard-bound", a.guard_bound, *forced]))
            results = {}
            for label, flags in configs:
                plan = work / f"{device}-{label.replace(' ', '_').replace('+', '')}.plan"
                t0 = time.time()
                kiln("build", model, "-o", plan, "--device", device, *flags)
                build_s = time.time() - t0
                got = run_plan(plan, inp.name, xs, work / "run")
                results[label] = got
                info = kiln("inspect", plan)
                guard = [l for l in info.splitlines() if l.startswith("int8:")]
                row = dict(model=name, device=device, config=label, rel_l2=errors(got, ref),
                           build_s=round(build_s, 1), int8=guard[0][6:] if guard else "")
                if device != "cpu" and label.startswith("int8") and ("cpu", label) in cpu_results.get(name, {}):
                    row["vs_cpu_int8"] = errors(got, cpu_results[name][("cpu", label)])
                print(json.dumps(row), flush=True)
                rows.append(row)
                cpu_results.setdefault(name, {})[(device, label)] = got
    lines = ["| model | device | config | rel. L2 error vs onnxruntime FP32 | GPU vs CPU INT8 |", "|---|---|---|---|---|"]
    for r in rows:
        vs = f"{r['vs_cpu_int8']:.2e}" if "vs_cpu_int8" in r else ""
        lines.append(f"| {r['model']} | {r['device']} | {r['config']} | {r['rel_l2']:.2e} | {vs} |")
    for r in rows:
        if r["int8"]:
            lines.append(f"- {r['model']} {r['device']} {r['config']}: {r['int8']}")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    print("\n" + table)


cpu_results = {}

if __name__ == "__main__":
    main()
