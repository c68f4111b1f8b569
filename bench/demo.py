"""The main demo: build an SSD engine with and without kiln's graph passes,
run both on the CPU next to onnxruntime, and print the before/after table;
where an NVIDIA GPU is present, also build and time FP32 and FP16 GPU engines.
Then turn SSDlite320 into a whole detector (bench/export_detector.py: decode +
EfficientNMS_TRT), build it, and run `kiln detect` on data/images/astronaut.png.

    .venv/bin/python bench/demo.py [--model ssdlite320_mnv3_bn] [--iters 30]
"""
import argparse
import json
import os
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

sys.path.insert(0, str(ROOT / "bench"))
import export_detector  # noqa: E402

KILN = os.environ.get("KILN_BIN", str(ROOT / "build" / "kiln"))


def kiln(*args):
    return subprocess.run([KILN, *map(str, args)], check=True, capture_output=True, text=True).stdout


def gpu_present():
    """A visible NVIDIA GPU and a kiln built with its CUDA backend."""
    try:
        if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode != 0:
            return False
    except OSError:
        return False
    probe = subprocess.run([KILN, "build", "--help"], capture_output=True, text=True).stdout
    return "--fp16" in probe


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ssdlite320_mnv3_bn", help="graph under tests/models/graphs")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--detect-out", default=str(ROOT / "build" / "demo-detect"),
                    help="where `kiln detect` writes the photo's JSON and PNG")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as wd:
        wd = Path(wd)
        model = fill_weights.fill(str(ROOT / "tests/models/graphs" / f"{a.model}.onnx"), str(wd / "model.onnx"))
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([1] + list(inp.shape[1:])).astype(np.float32)
        np.save(wd / "x.npy", x)
        ref = sess.run(None, {inp.name: x})
        rows = []
        configs = [("kiln, no passes", ["--no-opt"]), ("kiln, optimized", [])]
        gpu = gpu_present()
        if gpu:
            configs += [("kiln GPU fp32", ["--device", "cuda"]), ("kiln GPU fp16", ["--device", "cuda", "--fp16"])]
        for label, flags in configs:
            plan = wd / ("plan" + "".join(flags).replace("-", "_"))
            t0 = time.time()
            kiln("build", model, "-o", plan, *flags)
            build_s = time.time() - t0
            info = json.loads(kiln("inspect", plan, "--json"))
            kiln("run", plan, "--input", f"{inp.name}={wd / 'x.npy'}", "--outdir", wd / "out")
            err = max(float(np.abs(np.load(wd / "out" / f"{o.name}.npy") - r).max() / np.abs(r).max())
                      for o, r in zip(sess.get_outputs(), ref))
            bench = json.loads(kiln("bench", plan, "--iterations", a.iters, "--json"))
            rows.append((label, len(info["layers"]), info["launches"], bench["median_ms"], err, build_s))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        s2 = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        for _ in range(5):
            s2.run(None, {inp.name: x})
        ts = []
        for _ in range(a.iters):
            t = time.perf_counter()
            s2.run(None, {inp.name: x})
            ts.append((time.perf_counter() - t) * 1e3)
        ort_ms = sorted(ts)[len(ts) // 2]
    where = f"the CPU ({os.cpu_count()} threads)" + (" and the GPU (CUDA graphs, inputs on the device)" if gpu else "")
    print(f"\n{a.model} on {where}, batch 1, median of {a.iters} runs\n")
    print(f"{'engine':22} {'layers':>7} {'launches':>9} {'median ms':>10} {'vs onnxruntime':>15} {'max rel err':>12}")
    for label, layers, launches, ms, err, _ in rows:
        print(f"{label:22} {layers:7d} {launches:9d} {ms:10.2f} {ort_ms / ms:14.2f}x {err:12.1e}")
    print(f"{'onnxruntime (opt=all)':22} {'':7} {'':9} {ort_ms:10.2f} {1.0:14.2f}x")
    detect_demo(Path(a.detect_out), gpu)


def detect_demo(out, gpu=False):
    """SSDlite320 (filled weights, so the boxes are not meaningful) as one engine, on a photo."""
    photo = ROOT / "data" / "images" / "astronaut.png"
    out.mkdir(parents=True, exist_ok=True)
    model, plan = out / "ssdlite320_detector.onnx", out / "ssdlite320_detector.plan"
    export_detector.export(ROOT / "tests/models/graphs/ssdlite320_mnv3.onnx", model, score_threshold=0.03)
    kiln("build", model, "-o", plan, *(["--device", "cuda", "--fp16"] if gpu else []))
    Path(str(plan) + ".json").write_text(json.dumps(export_detector.SSDLITE_PREPROCESS))
    print(f"\nSSDlite320 + decode + EfficientNMS_TRT as one {'GPU' if gpu else 'CPU'} engine (random weights):")
    print(kiln("detect", plan, photo, "--out", out, "--threshold", 0.04).strip())
    stem = photo.stem
    print(f"detections: {out / (stem + '.json')}\nboxes drawn: {out / (stem + '.png')}")


if __name__ == "__main__":
    main()
