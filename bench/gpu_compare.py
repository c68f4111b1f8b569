"""Side-by-side GPU benchmark: kiln engines and PyTorch peers on the same GPU,
in the same run, on the torchvision architectures kiln is measured on.

Runs on a GPU machine with torch + torchvision (after scripts/device_bundle.sh
on the build machine and `source scripts/device_env.sh` there):
    python3 bench/gpu_compare.py --models resnet50,ssd300_vgg16 --out DIR
For each model and batch it exports the network to ONNX (random weights,
BatchNorm statistics randomized so folding is not trivial), builds a kiln
FP16 plan twice (cold, then warm timing cache), times it with `kiln bench`
(CUDA graphs, device-resident inputs), and times PyTorch eager FP16
channels-last, the same under a CUDA graph, and torch.compile
(reduce-overhead, FP16, channels-last). Prints one JSON line per result and
a Markdown table at the end.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch
import torchvision
from torchvision.models import detection as D

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import DetNet, randomize_bn  # noqa: E402

KILN = os.environ.get("KILN_BIN", "build-cuda/kiln")
# name -> (constructor, input size, (latency batch, throughput batch))
MODELS = {
    "resnet50": (lambda: randomize_bn(torchvision.models.resnet50()), 224, (1, 64)),
    "ssd300_vgg16": (lambda: DetNet(D.ssd300_vgg16(weights=None, weights_backbone=None)), 300, (1, 32)),
    "ssdlite320_mnv3": (lambda: randomize_bn(DetNet(D.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))),
                        320, (1, 32)),
    "retinanet_r50_fpn": (lambda: randomize_bn(DetNet(D.retinanet_resnet50_fpn(weights=None, weights_backbone=None))),
                          800, (1, 8)),
}


def emit(**kw):
    print(json.dumps(kw), flush=True)
    return kw


def torch_times(fn, iters=100, warm=20):
    """Sorted milliseconds of `iters` calls of fn, each timed with CUDA events after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    return sorted(ts)


def bench_torch(fn, iters=100, warm=20):
    ts = torch_times(fn, iters, warm)
    return ts[len(ts) // 2]


def graph_fn(m, x):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            m(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        m(x)
    return g.replay


def kiln(*args):
    r = subprocess.run([KILN, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(map(str, args))}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def export(name, m, hw, path):
    x = torch.randn(1, 3, hw, hw)
    outs = ["logits"] if name == "resnet50" else ["bbox_regression", "cls_logits"]
    torch.onnx.export(m, (x,), path, opset_version=17, input_names=["input"], output_names=outs,
                      dynamic_axes={"input": {0: "N"}, **{o: {0: "N"} for o in outs}}, dynamo=False)


def run_kiln(name, onnx_path, b, out, rows):
    plan = os.path.join(out, f"{name}_b{b}.plan")
    cache = os.path.join(out, f"{name}_b{b}.cache")
    if os.path.exists(cache):
        os.remove(cache)
    times = []
    for _ in range(2):  # cold, then warm timing cache
        t0 = time.time()
        kiln("build", onnx_path, "-o", plan, "--device", "cuda", "--fp16", "--batch", b, "--timing-cache", cache)
        times.append(time.time() - t0)
    j = json.loads(kiln("bench", plan, "--json", "--iterations", 200, "--warmup", 20))
    rows.append(emit(model=name, b=b, peer="kiln", prec="fp16", ms=j["median_ms"], min=j["min_ms"],
                     p90=j["p90_ms"], p99=j["p99_ms"], ips=j["throughput_per_s"], h2d_ms=j["h2d_ms"],
                     d2h_ms=j["d2h_ms"], build_cold_s=times[0], build_warm_s=times[1]))
    with open(os.path.join(out, f"{name}_b{b}_profile.txt"), "w") as f:
        f.write(kiln("bench", plan, "--profile", "--iterations", 20))
        f.write(kiln("inspect", plan, "--tactics"))


def run_peers(name, m, hw, b, rows, compile_too=True):
    with torch.no_grad():
        mh = m.eval().cuda().half().to(memory_format=torch.channels_last)
        x = torch.randn(b, 3, hw, hw, device="cuda").half().to(memory_format=torch.channels_last)
        ms = bench_torch(lambda: mh(x))
        rows.append(emit(model=name, b=b, peer="torch-eager-cl", prec="fp16", ms=ms, ips=b * 1000 / ms))
        ms = bench_torch(graph_fn(mh, x))
        rows.append(emit(model=name, b=b, peer="torch-cudagraph-cl", prec="fp16", ms=ms, ips=b * 1000 / ms))
        if compile_too:
            torch._dynamo.reset()
            t0 = time.time()
            cm = torch.compile(mh, mode="reduce-overhead")
            cm(x)
            torch.cuda.synchronize()
            ct = time.time() - t0
            ms = bench_torch(lambda: cm(x))
            rows.append(emit(model=name, b=b, peer="torch.compile-reduce-overhead", prec="fp16", ms=ms,
                             ips=b * 1000 / ms, compile_s=ct))


def table(rows):
    lines = ["| model | batch | kiln median ms | torch.compile ms | kiln / compile | kiln img/s | compile img/s "
             "| throughput ratio | eager-cl ms | cudagraph-cl ms | kiln build cold / warm s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    keyed = {(r["model"], r["b"], r["peer"]): r for r in rows}
    for (model, b, peer), k in keyed.items():
        if peer != "kiln":
            continue
        c = keyed.get((model, b, "torch.compile-reduce-overhead"), {})
        e = keyed.get((model, b, "torch-eager-cl"), {})
        g = keyed.get((model, b, "torch-cudagraph-cl"), {})
        ratio = k["ms"] / c["ms"] if c else float("nan")
        tput = k["ips"] / c["ips"] if c else float("nan")
        lines.append(f"| {model} | {b} | {k['ms']:.3f} | {c.get('ms', float('nan')):.3f} | {ratio:.2f} | "
                     f"{k['ips']:.0f} | {c.get('ips', float('nan')):.0f} | {tput:.2f} | {e.get('ms', float('nan')):.3f} | "
                     f"{g.get('ms', float('nan')):.3f} | {k['build_cold_s']:.1f} / {k['build_warm_s']:.1f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="", help="override, e.g. 1 (default: latency and throughput batch)")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kiln-bench"))
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (fast smoke run)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    emit(gpu=torch.cuda.get_device_name(), torch=torch.__version__, torchvision=torchvision.__version__,
         cudnn=torch.backends.cudnn.version(), date=time.strftime("%Y-%m-%d"))
    rows = []
    for name in a.models.split(","):
        make, hw, batches = MODELS[name]
        torch.manual_seed(0)
        m = make().eval()
        onnx_path = os.path.join(a.out, name + ".onnx")
        export(name, m, hw, onnx_path)
        for b in ([int(x) for x in a.batches.split(",")] if a.batches else batches):
            try:
                run_kiln(name, onnx_path, b, a.out, rows)
            except Exception as ex:  # report and go on: the peers still run
                emit(model=name, b=b, peer="kiln", error=str(ex)[-1500:])
            run_peers(name, m, hw, b, rows, compile_too=not a.no_compile)
        del m
        torch.cuda.empty_cache()
    t = table(rows)
    with open(os.path.join(a.out, "table.md"), "w") as f:
        f.write(t + "\n")
    print(t)


if __name__ == "__main__":
    main()
