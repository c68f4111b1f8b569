"""Launch counts before -> after kiln's graph passes, and agreement with
onnxruntime, on the torchvision exports and the seed model (CPU, batch 1).

    python3 bench/graph_passes.py [--models a,b,...]   # prints a Markdown table
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models"))
import fill_weights  # noqa: E402

KILN = os.environ.get("KILN_BIN", str(ROOT / "build" / "kiln"))
MODELS = "seed_cbr_ssd,resnet18_bn,ssdlite320_mnv3_bn,resnet50,ssd300_vgg16,ssdlite320_mnv3,retinanet_r50_fpn,mobilenet_v2"


def kiln(*args):
    return subprocess.run([KILN, *map(str, args)], check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=MODELS)
    a = ap.parse_args()
    print("| model | ONNX nodes | layers before | launches before | layers after | launches after | max rel err vs onnxruntime |")
    print("|---|---|---|---|---|---|---|")
    for name in a.models.split(","):
        with tempfile.TemporaryDirectory() as wd:
            wd = Path(wd)
            if name == "seed_cbr_ssd":
                model = ROOT / "tests/models/seed_cbr_ssd.onnx"
            else:
                model = Path(fill_weights.fill(str(ROOT / "tests/models/graphs" / f"{name}.onnx"), str(wd / "m.onnx")))
            import onnx
            onnx_nodes = len(onnx.load(str(model), load_external_data=False).graph.node)
            counts = {}
            for label, flags in (("before", ["--no-opt"]), ("after", [])):
                plan = wd / f"{label}.plan"
                kiln("build", model, "-o", plan, *flags)
                info = json.loads(kiln("inspect", plan, "--json"))
                counts[label] = (len(info["layers"]), info["launches"])
            sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            inp = sess.get_inputs()[0]
            x = np.random.default_rng(0).standard_normal([1] + list(inp.shape[1:])).astype(np.float32)
            np.save(wd / "x.npy", x)
            ref = sess.run(None, {inp.name: x})
            kiln("run", wd / "after.plan", "--input", f"{inp.name}={wd / 'x.npy'}", "--outdir", wd / "out")
            err = max(float(np.abs(np.load(wd / "out" / f"{o.name}.npy") - r).max() / np.abs(r).max())
                      for o, r in zip(sess.get_outputs(), ref))
            print(f"| {name} | {onnx_nodes} | {counts['before'][0]} | {counts['before'][1]} | {counts['after'][0]} | "
                  f"{counts['after'][1]} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
