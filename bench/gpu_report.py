"""The SSD300 GPU build report: one device command that exports SSD300-VGG16
(torchvision graph, random weights, BatchNorm-free), builds it with kiln for
the GPU unoptimized FP32, FP32, FP16 and INT8+FP16, times each plan with
`kiln bench --json`, times torch.compile (reduce-overhead, FP16,
channels-last) and PyTorch eager in the same run, and writes the INT8 plan's
report with every bench file charted:

    python3 bench/gpu_report.py --out DIR [--batch 1]

DIR then holds ssd300_gpu.html, the plans' bench JSON and the peers' (in
`kiln bench --json`'s fields, so `kiln report --bench` charts them).
Screenshots: python3 scripts/report_shots.py DIR/ssd300_gpu.html docs/report/ssd300_gpu
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torchvision.models import detection as D

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import DetNet  # noqa: E402
from gpu_compare import export, graph_fn, torch_times  # noqa: E402

KILN = os.environ.get("KILN_BIN", "build-cuda/kiln")


def kiln(*args):
    cmd = [KILN, *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def peer_json(path, label, batch, ts, command):
    """A peer's times in the fields `kiln bench --json` writes (what `kiln report --bench` reads)."""
    pick = lambda p: ts[min(len(ts) - 1, int(p / 100 * (len(ts) - 1) + 0.5))]  # noqa: E731
    j = {"plan": label, "device": torch.cuda.get_device_name(), "batch": batch, "iterations": len(ts),
         "min_ms": ts[0], "median_ms": pick(50), "mean_ms": sum(ts) / len(ts), "p90_ms": pick(90),
         "p99_ms": pick(99), "max_ms": ts[-1], "throughput_per_s": batch * 1000 / pick(50),
         "date": time.strftime("%Y-%m-%d"), "command": command}
    with open(path, "w") as f:
        json.dump(j, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kiln-report"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=200)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    out = lambda name: os.path.join(a.out, name)  # noqa: E731
    torch.manual_seed(0)
    m = DetNet(D.ssd300_vgg16(weights=None, weights_backbone=None)).eval()
    model = out("ssd300.onnx")
    export("ssd300_vgg16", m, 300, model)
    b = a.batch

    calib = out("calib")
    os.makedirs(calib, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(4):
        np.save(os.path.join(calib, f"{k:03d}.npy"), rng.standard_normal((b, 3, 300, 300)).astype(np.float32))
    plans = {
        "noopt_fp32": ["--no-opt"],
        "fp32": [],
        "fp16": ["--fp16"],
        "int8": ["--int8", "--fp16", "--calib", calib],
    }
    benches = []
    for name, flags in plans.items():
        plan = out(f"ssd300_{name}.plan")
        t0 = time.time()
        kiln("build", model, "-o", plan, "--device", "cuda", "--batch", b, *flags)
        print(f"built {name} in {time.time() - t0:.1f} s", flush=True)
        j = kiln("bench", plan, "--json", "--iterations", a.iterations, "--warmup", 20)
        with open(out(f"{name}.json"), "w") as f:
            f.write(j)
        benches.append(out(f"{name}.json"))
        print(name, json.loads(j)["median_ms"], "ms", flush=True)

    with torch.no_grad():
        mh = m.cuda().half().to(memory_format=torch.channels_last)
        x = torch.randn(b, 3, 300, 300, device="cuda").half().to(memory_format=torch.channels_last)
        ts = torch_times(lambda: mh(x), a.iterations)
        peer_json(out("torch_eager.json"), "PyTorch eager FP16 channels-last", b, ts, "bench/gpu_report.py")
        ts = torch_times(graph_fn(mh, x), a.iterations)
        peer_json(out("torch_cudagraph.json"), "PyTorch CUDA graph FP16 channels-last", b, ts, "bench/gpu_report.py")
        torch._dynamo.reset()
        cm = torch.compile(mh, mode="reduce-overhead")
        ts = torch_times(lambda: cm(x), a.iterations)
        peer_json(out("torch_compile.json"), "torch.compile reduce-overhead FP16 channels-last", b, ts,
                  "bench/gpu_report.py")
    benches += [out("torch_eager.json"), out("torch_cudagraph.json"), out("torch_compile.json")]
    # The report of the INT8 plan with every figure of this run charted.
    args = ["report", out("ssd300_int8.plan"), "-o", out("ssd300_gpu.html"), "--model", model, "--batch", b]
    for f in benches:
        args += ["--bench", f]
    kiln(*args)
    with open(out("inspect.json"), "w") as f:
        f.write(kiln("inspect", out("ssd300_int8.plan"), "--json"))
    for f in benches:
        j = json.load(open(f))
        print(f"{os.path.basename(f):22s} median {j['median_ms']:.3f} ms  min {j['min_ms']:.3f}  p99 {j['p99_ms']:.3f}")


if __name__ == "__main__":
    main()
