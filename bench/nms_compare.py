"""SSD300 post-processing and end-to-end detection on the GPU: kiln against
torchvision in the same run.

Post-processing: torchvision's SSD300 postprocess_detections (decode, per-class
score threshold 0.01 and top-k 400, batched NMS at IoU 0.45, 200 kept) on
random head outputs (8732 priors x 91 classes; random scores put every box
above the threshold: the worst case), against a kiln engine made of the decode
+ Softmax + EfficientNMS_TRT layers that bench/export_detector.py appends
(score 0.01, IoU 0.45, 200 kept, no top-k cut before NMS).
End to end: kiln FP16 engine of the whole SSD300 detector (network + decode +
NMS) against torchvision's SSD300 forward (eval mode), batch 1.

    python3 bench/nms_compare.py --out DIR      (GPU machine, after scripts/device_env.sh)
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torchvision.models import detection as D

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_detector  # noqa: E402
from export_torchvision import DetNet  # noqa: E402
from gpu_compare import bench_torch  # noqa: E402

KILN = os.environ.get("KILN_BIN", "build-cuda/kiln")


def emit(**kw):
    print(json.dumps(kw), flush=True)
    return kw


def kiln(*args):
    r = subprocess.run([KILN, *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kiln {' '.join(map(str, args))}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def anchors_of(ssd, hw=300):
    """SSD300's anchors as [B,4] centre-size in input pixels."""
    x = torch.zeros(1, 3, hw, hw)
    images, _ = ssd.transform(list(x))
    feats = list(ssd.backbone(images.tensors).values())
    a = ssd.anchor_generator(images, feats)[0]  # x1, y1, x2, y2
    wh = a[:, 2:] - a[:, :2]
    return torch.cat([a[:, :2] + wh / 2, wh], 1).numpy().astype(np.float32)


def postprocess_model(path, anchors, classes=91):
    """Just what export_detector appends, fed by the head's raw outputs as inputs."""
    b = len(anchors)
    ins = [helper.make_tensor_value_info("reg_in", TensorProto.FLOAT, ["N", b, 4]),
           helper.make_tensor_value_info("logits_in", TensorProto.FLOAT, ["N", b, classes])]
    outs = [helper.make_tensor_value_info("bbox_regression", TensorProto.FLOAT, ["N", b, 4]),
            helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, ["N", b, classes])]
    # Identities (removed by kiln's passes) name the tensors as a head's outputs.
    nodes = [helper.make_node("Identity", ["reg_in"], ["bbox_regression"]),
             helper.make_node("Identity", ["logits_in"], ["cls_logits"])]
    m = helper.make_model(helper.make_graph(nodes, "post", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, path + ".head.onnx")
    export_detector.export(path + ".head.onnx", path, anchors=anchors, score_threshold=0.01, iou_threshold=0.45,
                           max_output_boxes=200)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/kiln-nms"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    ssd = D.ssd300_vgg16(weights=None, weights_backbone=None).eval()
    anchors = anchors_of(ssd)
    rows = []
    post = os.path.join(a.out, "ssd300_post.onnx")
    postprocess_model(post, anchors)
    ssd = ssd.cuda()
    with torch.no_grad():
        for b in (1, 8):
            plan = os.path.join(a.out, f"post_b{b}.plan")
            kiln("build", post, "-o", plan, "--device", "cuda", "--batch", b)
            j = json.loads(kiln("bench", plan, "--json", "--iterations", 200, "--warmup", 20))
            rows.append(emit(what="ssd300_postprocess", b=b, peer="kiln", ms=j["median_ms"], p90=j["p90_ms"]))
            x = torch.randn(b, 3, 300, 300, device="cuda")
            images, _ = ssd.transform(list(x))
            feats = list(ssd.backbone(images.tensors).values())
            head = ssd.head(feats)
            head["cls_logits"] = torch.randn_like(head["cls_logits"]) * 3
            anc = ssd.anchor_generator(images, feats)
            ms = bench_torch(lambda: ssd.postprocess_detections(head, anc, images.image_sizes), iters=30, warm=5)
            rows.append(emit(what="ssd300_postprocess", b=b, peer="torchvision", ms=ms))
        # Whole detector: network (FP16) + decode + NMS in one kiln engine.
        net = os.path.join(a.out, "ssd300_net.onnx")
        torch.onnx.export(DetNet(ssd.cpu()).eval(), (torch.randn(1, 3, 300, 300),), net, opset_version=17,
                          input_names=["images"], output_names=["bbox_regression", "cls_logits"],
                          dynamic_axes={"images": {0: "N"}}, dynamo=False)
        det = os.path.join(a.out, "ssd300_det.onnx")
        export_detector.export(net, det, anchors=anchors, score_threshold=0.01, iou_threshold=0.45,
                               max_output_boxes=200)
        plan = os.path.join(a.out, "ssd300_det.plan")
        kiln("build", det, "-o", plan, "--device", "cuda", "--fp16", "--batch", 1)
        j = json.loads(kiln("bench", plan, "--json", "--iterations", 200, "--warmup", 20))
        rows.append(emit(what="ssd300_end2end", b=1, peer="kiln-fp16", ms=j["median_ms"], p90=j["p90_ms"]))
        ssd = ssd.cuda()
        x = [torch.randn(3, 300, 300, device="cuda")]
        ms = bench_torch(lambda: ssd(x), iters=30, warm=5)
        rows.append(emit(what="ssd300_end2end", b=1, peer="torchvision-fp32", ms=ms))
        with open(os.path.join(a.out, "profile_det.txt"), "w") as f:
            f.write(kiln("bench", plan, "--profile", "--iterations", 20))
    print("| what | batch | kiln ms | torchvision ms |\n|---|---|---|---|")
    for r in rows:
        if r["peer"].startswith("kiln"):
            t = next(q for q in rows if q["what"] == r["what"] and q["b"] == r["b"] and not q["peer"].startswith("kiln"))
            print(f"| {r['what']} | {r['b']} | {r['ms']:.3f} | {t['ms']:.3f} |")


if __name__ == "__main__":
    main()
