"""INT8 throughput on the GPU: kiln INT8 (+FP16 where faster or INT8 has no
kernel), kiln FP16 and torch.compile FP16 in the same run, on the torchvision
architectures of bench/gpu_compare.py (random weights, BatchNorm statistics
randomized).

INT8 scales come from `kiln calibrate` at batch 1 on standard-normal inputs
(the nets have random weights, so real photos carry no more information),
then the cache serves the large-batch build: tensor names do not depend on
the batch.

    python3 bench/int8_compare.py --models resnet50:256,ssd300_vgg16:32,ssdlite320_mnv3:32 --out DIR
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_compare import MODELS, bench_torch, emit, export, kiln  # noqa: E402


def kiln_bench(plan):
    j = json.loads(kiln("bench", plan, "--json", "--iterations", 100, "--warmup", 10))
    return j["median_ms"]


def int8_line(plan):
    for line in kiln("inspect", plan).splitlines():
        if line.startswith("int8:") or line.startswith("precision choice:"):
            yield line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50:256,ssd300_vgg16:32,ssdlite320_mnv3:32")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kiln-int8"))
    ap.add_argument("--calib-images", type=int, default=8)
    ap.add_argument("--compile-b64", action="store_true", help="also torch.compile at batch 64 (the INT8 goal is 3x that)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    emit(gpu=torch.cuda.get_device_name(), torch=torch.__version__, torchvision=torchvision.__version__,
         date=time.strftime("%Y-%m-%d"))
    rows = []
    for spec in a.models.split(","):
        name, b = spec.split(":")
        b = int(b)
        make, hw, _ = MODELS[name]
        torch.manual_seed(0)
        m = make().eval()
        onnx_path = os.path.join(a.out, name + ".onnx")
        export(name, m, hw, onnx_path)
        cal = os.path.join(a.out, name + "_calib")
        os.makedirs(cal, exist_ok=True)
        rng = np.random.default_rng(0)
        for k in range(a.calib_images):
            np.save(os.path.join(cal, f"{k:03d}.npy"), rng.standard_normal((1, 3, hw, hw)).astype(np.float32))
        cache = os.path.join(a.out, name + ".calib")
        t0 = time.time()
        kiln("calibrate", onnx_path, "--batch", 1, "--calib", cal, "--calib-cache", cache)
        calib_s = time.time() - t0
        row = dict(model=name, b=b, calib_s=round(calib_s, 1))
        # One timing cache: the INT8 build reuses the FP16 build's float timings.
        tcache = os.path.join(a.out, f"{name}_b{b}.timing")
        for label, flags in (("fp16", ["--fp16"]), ("int8", ["--int8", "--fp16", "--calib-cache", cache])):
            flags = flags + ["--timing-cache", tcache]
            plan = os.path.join(a.out, f"{name}_b{b}_{label}.plan")
            t0 = time.time()
            try:
                kiln("build", onnx_path, "-o", plan, "--device", "cuda", "--batch", b, *flags)
            except RuntimeError as ex:
                emit(model=name, b=b, config=label, error=str(ex)[-1500:])
                continue
            row[f"{label}_build_s"] = round(time.time() - t0, 1)
            ms = kiln_bench(plan)
            row[f"{label}_ms"] = ms
            row[f"{label}_ips"] = b * 1000 / ms
            row[f"{label}_notes"] = list(int8_line(plan))
            with open(os.path.join(a.out, f"{name}_b{b}_{label}_profile.txt"), "w") as f:
                f.write(kiln("bench", plan, "--profile", "--iterations", 20))
        with torch.no_grad():
            mh = m.cuda().half().to(memory_format=torch.channels_last)
            for cb in sorted({b, 64} if a.compile_b64 and name == "resnet50" else {b}):
                x = torch.randn(cb, 3, hw, hw, device="cuda").half().to(memory_format=torch.channels_last)
                torch._dynamo.reset()
                cm = torch.compile(mh, mode="reduce-overhead")
                cm(x)
                torch.cuda.synchronize()
                ms = bench_torch(lambda: cm(x), iters=50, warm=10)
                row[f"compile_b{cb}_ips"] = cb * 1000 / ms
                row[f"compile_b{cb}_ms"] = ms
        rows.append(emit(**row))
        del m
        torch.cuda.empty_cache()
    print()
    print("| model | batch | kiln INT8 img/s | kiln FP16 img/s | torch.compile FP16 img/s | INT8 / compile | "
          "INT8 / kiln FP16 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        c = r.get(f"compile_b{r['b']}_ips", float("nan"))
        i8, f16 = r.get("int8_ips", float("nan")), r.get("fp16_ips", float("nan"))
        print(f"| {r['model']} | {r['b']} | {i8:.0f} | {f16:.0f} | {c:.0f} | {i8 / c:.2f} | {i8 / f16:.2f} |")


if __name__ == "__main__":
    main()
