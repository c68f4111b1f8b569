"""Append box decoding and EfficientNMS_TRT to an SSD-style detector so the whole
detector (backbone, head, decode, NMS) is one kiln engine.

The input model ends in two outputs, as torchvision's SSD/SSDlite heads do:
  bbox_regression [N,B,4]  (dx, dy, dw, dh) against anchors, scaled by weights (10, 10, 5, 5)
  cls_logits      [N,B,C]  class 0 = background
A graph-only file (tests/models/graphs/*.onnx, weights stored externally and
not kept) gets its weights filled from --seed first.

Decoding: EfficientNMS_TRT with box_coding=1 and an anchors input computes
xc = dx*aw + ax, yc = dy*ah + ay, w = exp(dw)*aw, h = exp(dh)*ah (its README),
which is torchvision's BoxCoder.decode_single once the regression is divided
by the weights and dw, dh are clipped at log(1000/16). So the graph adds
Div + Min, and the anchors (centre-size, input pixels) as a constant input of
the NMS node. Scores: Softmax over classes, background_class=0.

Anchors: --anchors FILE.npy ([B,4] centre-size in input pixels), else
torchvision's DefaultBoxGenerator for SSDlite320 (ssd_anchors below), written
without torch.

    python3 bench/export_detector.py GRAPH.onnx OUT.onnx [--seed S] [--score-threshold T]
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models"))
import fill_weights  # noqa: E402

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
# torchvision's SSDlite320 transform: pixels in 0..1, then (x - 0.5) / 0.5.
SSDLITE_PREPROCESS = {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB"}


def ssd_anchors(feature_maps=(20, 10, 5, 3, 2, 1), aspect_ratios=((2, 3),) * 6, min_ratio=0.2, max_ratio=0.95,
                image_size=(320, 320), clip=True):
    """DefaultBoxGenerator's boxes as [B,4] centre-size in input pixels (x, y, w, h).

    Per feature map k (size f, square grids, no explicit steps): scale s_k spaced
    linearly from min_ratio to max_ratio, plus 1.0 after the last; boxes per
    location: (s_k, s_k), (s', s') with s' = sqrt(s_k * s_{k+1}), then (s_k*sqrt(a),
    s_k/sqrt(a)) and its transpose per aspect ratio a; sizes clipped to [0, 1]
    when clip. Centres ((j + 0.5)/f, (i + 0.5)/f) row by row, the boxes of one
    location next to each other."""
    m = len(feature_maps)
    scales = [min_ratio + (max_ratio - min_ratio) * k / (m - 1.0) for k in range(m)] + [1.0]
    out = []
    for k, f in enumerate(feature_maps):
        s_k, s_next = scales[k], math.sqrt(scales[k] * scales[k + 1])
        wh = [(s_k, s_k), (s_next, s_next)]
        for a in aspect_ratios[k]:
            r = math.sqrt(a)
            wh += [(s_k * r, s_k / r), (s_k / r, s_k * r)]
        wh = np.array(wh, dtype=np.float32)
        if clip:
            wh = np.clip(wh, 0.0, 1.0)
        centers = (np.arange(f, dtype=np.float32) + 0.5) / np.float32(f)
        cy, cx = np.meshgrid(centers, centers, indexing="ij")
        xy = np.stack([cx.reshape(-1), cy.reshape(-1)], axis=-1)  # [f*f, 2]
        boxes = np.concatenate([np.repeat(xy, len(wh), axis=0), np.tile(wh, (f * f, 1))], axis=1)
        out.append(boxes)
    boxes = np.concatenate(out, axis=0)
    # torchvision scales to pixels and goes through corners; the rounding of that
    # round trip is kept so the anchors match its decode bit for bit as far as possible.
    size = np.array([image_size[1], image_size[0]] * 2, dtype=np.float32)
    b = boxes * size
    corners = np.concatenate([b[:, :2] - 0.5 * b[:, 2:], b[:, :2] + 0.5 * b[:, 2:]], axis=1)
    w = corners[:, 2:] - corners[:, :2]
    return np.concatenate([corners[:, :2] + 0.5 * w, w], axis=1).astype(np.float32)


def has_external(model):
    return any(i.data_location == TensorProto.EXTERNAL for i in model.graph.initializer)


def export(src, dst, anchors=None, seed=0, score_threshold=0.001, iou_threshold=0.55, max_output_boxes=300,
           regression="bbox_regression", logits="cls_logits"):
    """Writes the detector to `dst`; returns the anchors used ([B,4] centre-size, float32)."""
    model = onnx.load(str(src), load_external_data=False)
    if has_external(model):
        fill_weights.fill(str(src), str(dst), seed)
        model = onnx.load(str(dst))
    g = model.graph
    outs = {o.name: o for o in g.output}
    if regression not in outs or logits not in outs:
        raise SystemExit(f"{src}: needs outputs '{regression}' and '{logits}', has {sorted(outs)}")
    if anchors is None:
        anchors = ssd_anchors()
    dims = [d.dim_value for d in outs[regression].type.tensor_type.shape.dim]
    if len(dims) == 3 and dims[1] and dims[1] != len(anchors):
        raise SystemExit(f"{src}: {dims[1]} boxes but {len(anchors)} anchors")
    k = "detector_"
    g.initializer.extend([
        numpy_helper.from_array(np.array(BOX_WEIGHTS, np.float32).reshape(1, 1, 4), k + "box_weights"),
        numpy_helper.from_array(np.array([np.inf, np.inf, BBOX_XFORM_CLIP, BBOX_XFORM_CLIP], np.float32)
                                .reshape(1, 1, 4), k + "box_clip"),
        numpy_helper.from_array(anchors.astype(np.float32).reshape(1, -1, 4), k + "anchors"),
    ])
    g.node.extend([
        helper.make_node("Div", [regression, k + "box_weights"], [k + "deltas"], name=k + "div_weights"),
        helper.make_node("Min", [k + "deltas", k + "box_clip"], [k + "deltas_clipped"], name=k + "clip_dwdh"),
        helper.make_node("Softmax", [logits], [k + "scores"], name=k + "softmax", axis=-1),
        helper.make_node("EfficientNMS_TRT", [k + "deltas_clipped", k + "scores", k + "anchors"],
                         ["num_detections", "detection_boxes", "detection_scores", "detection_classes"],
                         name=k + "nms", domain="TRT", score_threshold=float(score_threshold),
                         iou_threshold=float(iou_threshold), max_output_boxes=int(max_output_boxes),
                         background_class=0, score_activation=0, class_agnostic=0, box_coding=1,
                         plugin_version="1"),
    ])
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info("num_detections", TensorProto.INT32, None),
                     helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, None),
                     helper.make_tensor_value_info("detection_classes", TensorProto.INT32, None)])
    if not any(o.domain == "TRT" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("TRT", 1))
    onnx.save(model, str(dst))
    return anchors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="SSD-style ONNX (graph-only or with weights)")
    ap.add_argument("out", help="detector ONNX to write")
    ap.add_argument("--anchors", help="[B,4] centre-size anchors in input pixels (.npy); default SSDlite320's")
    ap.add_argument("--seed", type=int, default=0, help="weights seed for a graph-only model")
    ap.add_argument("--score-threshold", type=float, default=0.001)
    ap.add_argument("--iou-threshold", type=float, default=0.55)
    ap.add_argument("--max-output-boxes", type=int, default=300)
    a = ap.parse_args()
    anchors = np.load(a.anchors).astype(np.float32) if a.anchors else None
    anchors = export(a.model, a.out, anchors, a.seed, a.score_threshold, a.iou_threshold, a.max_output_boxes)
    sidecar = a.out + ".preprocess.json"
    Path(sidecar).write_text(json.dumps(SSDLITE_PREPROCESS) + "\n")
    print(f"{a.out}: {len(anchors)} anchors, EfficientNMS_TRT appended; preprocessing in {sidecar}")


if __name__ == "__main__":
    main()
