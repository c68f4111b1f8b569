"""Export a trained ShapesSSD to ONNX for kiln: once with BatchNormalization nodes kept,
once with BatchNorm folded into the convolutions by the exporter, each as a pre-NMS
model (outputs bbox_regression, cls_logits) and as a full detector ending in kiln's
EfficientNMS_TRT (decode inside the graph, as bench/export_detector.py builds it).

    python3 bench/detector/export.py CHECKPOINT.pt OUT_DIR
writes OUT_DIR/detector_bn.onnx, detector_folded.onnx, their .prenms.onnx, and
detector.preprocess.json (for `kiln detect --preprocess`, or copy it to PLAN.json).
Opset 17, IR version 8.
"""
import argparse
import json
import os
import sys
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402

OPSET, IR_VERSION = 17, 8
SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS = 0.01, 0.45, 100
OUTPUTS = ["num_detections", "detection_boxes", "detection_scores", "detection_classes"]


def count_ops(proto, op):
    return sum(n.op_type == op for n in proto.graph.node)


def export_prenms(net, path, fold, batch=1):
    """torch -> ONNX [batch,3,300,300] -> (bbox_regression, cls_logits).

    Both use training=EVAL. fold=False: no constant folding, every BatchNorm stays a
    BatchNormalization node; fold=True: constant folding, the exporter fuses BN into the
    Conv weights. The node count is checked either way."""
    net = net.eval()
    x = torch.zeros(batch, 3, M.SIZE, M.SIZE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), path, dynamo=False, opset_version=OPSET, input_names=["images"],
                          output_names=["bbox_regression", "cls_logits"], do_constant_folding=fold,
                          training=torch.onnx.TrainingMode.EVAL)
    proto = onnx.load(path)
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    n_bn = count_ops(proto, "BatchNormalization")
    want = 0 if fold else sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    if n_bn != want:
        raise RuntimeError(f"{path}: {n_bn} BatchNormalization nodes, expected {want} (fold={fold})")
    return proto


def add_nms_tail(proto, anchors, score_threshold=SCORE_THRESHOLD, iou_threshold=IOU_THRESHOLD,
                 max_detections=MAX_DETECTIONS):
    """Appends Div(box weights) + Min(clip dw, dh) + Softmax + EfficientNMS_TRT (box_coding 1,
    centre-size anchors in input pixels, background class 0): the decode of model.decode."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    k = "detector_"
    g.initializer.extend([
        numpy_helper.from_array(np.array(M.BOX_WEIGHTS, np.float32).reshape(1, 1, 4), k + "box_weights"),
        numpy_helper.from_array(np.array([np.inf, np.inf, M.BBOX_XFORM_CLIP, M.BBOX_XFORM_CLIP], np.float32)
                                .reshape(1, 1, 4), k + "box_clip"),
        numpy_helper.from_array(anchors.astype(np.float32).reshape(1, -1, 4), k + "anchors"),
    ])
    g.node.extend([
        helper.make_node("Div", ["bbox_regression", k + "box_weights"], [k + "deltas"], name=k + "div_weights"),
        helper.make_node("Min", [k + "deltas", k + "box_clip"], [k + "deltas_clipped"], name=k + "clip_dwdh"),
        helper.make_node("Softmax", ["cls_logits"], [k + "scores"], name=k + "softmax", axis=-1),
        helper.make_node("EfficientNMS_TRT", [k + "deltas_clipped", k + "scores", k + "anchors"], OUTPUTS,
                         name=k + "nms", domain="TRT", score_threshold=float(score_threshold),
                         iou_threshold=float(iou_threshold), max_output_boxes=int(max_detections),
                         background_class=0, score_activation=0, class_agnostic=0, box_coding=1,
                         plugin_version="1"),
    ])
    del g.output[:]
    n, K = g.input[0].type.tensor_type.shape.dim[0].dim_value, int(max_detections)
    g.output.extend([helper.make_tensor_value_info("num_detections", TensorProto.INT32, [n, 1]),
                     helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [n, K, 4]),
                     helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [n, K]),
                     helper.make_tensor_value_info("detection_classes", TensorProto.INT32, [n, K])])
    model.opset_import.append(helper.make_opsetid("TRT", 1))
    model.ir_version = IR_VERSION
    return model


def check_with_onnxruntime(net, paths, images):
    """Max |onnxruntime - torch| of each pre-NMS model's outputs on `images` (uint8 NHWC)."""
    import onnxruntime as ort
    x = M.normalize(torch.from_numpy(images)).contiguous()
    with torch.no_grad():
        ref = [t.numpy() for t in net.eval()(x)]
    out = {}
    for p in paths:
        sess = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
        batch = sess.get_inputs()[0].shape[0]
        got = [[], []]
        for i in range(0, len(x), batch):
            r = sess.run(["bbox_regression", "cls_logits"], {"images": x[i:i + batch].numpy()})
            got[0].append(r[0])
            got[1].append(r[1])
        got = [np.concatenate(g) for g in got]
        out[os.path.basename(p)] = {"bbox_regression": float(np.abs(got[0] - ref[0]).max()),
                                    "cls_logits": float(np.abs(got[1] - ref[1]).max())}
    return out


def export_all(net, out_dir, check_images=None, batch=1):
    """Writes the four ONNX files and the preprocessing JSON; returns a summary dict."""
    os.makedirs(out_dir, exist_ok=True)
    anchors = M.anchors_cxcywh()
    summary = {}
    pre_paths = []
    for tag, fold in (("bn", False), ("folded", True)):
        pre = os.path.join(out_dir, f"detector_{tag}.prenms.onnx")
        proto = export_prenms(net, pre, fold, batch)
        full = add_nms_tail(proto, anchors)
        path = os.path.join(out_dir, f"detector_{tag}.onnx")
        onnx.checker.check_model(full)  # TRT-domain node is not schema-checked
        onnx.save(full, path)
        pre_paths.append(pre)
        summary[tag] = {"path": path, "prenms": pre, "nodes": len(full.graph.node),
                        "BatchNormalization": count_ops(full, "BatchNormalization"),
                        "Conv": count_ops(full, "Conv"), "bytes": os.path.getsize(path)}
    pp = os.path.join(out_dir, "detector.preprocess.json")
    with open(pp, "w") as f:
        json.dump(M.PREPROCESS, f)
        f.write("\n")
    summary["preprocess"] = pp
    if check_images is not None:
        summary["onnxruntime_vs_torch_max_abs"] = check_with_onnxruntime(net, pre_paths, check_images)
    return summary


def load_checkpoint(path):
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = M.ShapesSSD()
    net.load_state_dict(ck["model"])
    return net.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Export a ShapesSSD checkpoint to ONNX (BN kept and BN folded).")
    ap.add_argument("checkpoint")
    ap.add_argument("out_dir")
    ap.add_argument("--batch", type=int, default=1, help="static batch of the exported input")
    a = ap.parse_args(argv)
    import shapes
    imgs = np.stack([im for im, _, _ in shapes.generate(shapes.VAL_SEED, 4)])
    s = export_all(load_checkpoint(a.checkpoint), a.out_dir, imgs, a.batch)
    print(json.dumps(s, indent=1))


if __name__ == "__main__":
    sys.exit(main())
