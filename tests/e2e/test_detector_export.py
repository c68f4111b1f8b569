"""The SSDlite320 detector exported with bench/export_detector.py (decode +
EfficientNMS_TRT appended), built by kiln and run by `kiln detect` on the
sample photo, against an oracle: the same backbone in onnxruntime, then
preprocessing, anchor decoding and greedy NMS written here in numpy (float64)
following torchvision's BoxCoder and the plugin README's selection rules."""
import json
import shutil
import struct
import sys
import zlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import ROOT, kiln, model_path, one_line_error

sys.path.insert(0, str(ROOT / "bench"))
import export_detector  # noqa: E402

PHOTO = ROOT / "data" / "images" / "astronaut.png"
PRE = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB"}
IOU, K = 0.55, 100


def read_png(path):
    """8-bit RGB/RGBA, non-interlaced PNG -> [H, W, 3] uint8 (enough for the files used here)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat, hdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0], "bad CRC"
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color, _, _, interlace = hdr
    assert depth == 8 and color in (2, 6) and interlace == 0, hdr
    bpp = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):  # filters need the reconstructed left neighbour: one byte at a time
            a = cur[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if f == 0:
                p = 0
            elif f == 1:
                p = a
            elif f == 2:
                p = b
            elif f == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[x] = (line[x] + p) & 255
        out[y] = cur
        prev = cur
    return out.reshape(h, w, bpp)[:, :, :3].astype(np.uint8)


def preprocess(img, h, w):
    """Bilinear resize with pixel centres aligned (half-pixel), then normalize -> [1,3,h,w]."""
    ih, iw, _ = img.shape
    fy = np.clip((np.arange(h) + 0.5) * ih / h - 0.5, 0, ih - 1)
    fx = np.clip((np.arange(w) + 0.5) * iw / w - 0.5, 0, iw - 1)
    y0, x0 = fy.astype(int), fx.astype(int)
    y1, x1 = np.minimum(y0 + 1, ih - 1), np.minimum(x0 + 1, iw - 1)
    wy, wx = (fy - y0)[:, None, None], (fx - x0)[None, :, None]
    p = img.astype(np.float64)
    top = p[y0][:, x0] * (1 - wx) + p[y0][:, x1] * wx
    bot = p[y1][:, x0] * (1 - wx) + p[y1][:, x1] * wx
    v = (top * (1 - wy) + bot * wy) * PRE["scale"]
    v = (v - np.array(PRE["mean"])) / np.array(PRE["std"])
    return v.transpose(2, 0, 1)[None].astype(np.float32)


def iou(a, b):
    """IoU of corner boxes as the README defines it: degenerate or touching boxes never suppress."""
    ea, eb = a[2:] - a[:2], b[2:] - b[:2]
    if not (np.all(ea > 0) and np.all(eb > 0)):
        return 0.0
    i = np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2])
    if not np.all(i > 0):
        return 0.0
    inter = i[0] * i[1]
    return inter / (ea[0] * ea[1] + eb[0] * eb[1] - inter)


def oracle(reg, logits, anchors, thr):
    """torchvision decode (weights 10,10,5,5, dw/dh clipped) + softmax + per-class greedy NMS."""
    reg, logits, a = reg.astype(np.float64), logits.astype(np.float64), anchors.astype(np.float64)
    d = reg / np.array([10, 10, 5, 5])
    d[:, 2:] = np.minimum(d[:, 2:], np.log(1000 / 16))
    c = d[:, :2] * a[:, 2:] + a[:, :2]
    wh = np.exp(d[:, 2:]) * a[:, 2:]
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = e / e.sum(axis=1, keepdims=True)
    b, cls = np.nonzero(scores[:, 1:] > thr)
    cls = cls + 1
    s = scores[b, cls]
    order = np.lexsort((cls, b, -s))  # score descending, then box, then class
    kept = []
    for j in order:
        if all(cls[j] != cls[k] or iou(boxes[b[j]], boxes[b[k]]) <= IOU for k in kept):
            kept.append(j)
            if len(kept) == K:
                break
    return [(boxes[b[j]], s[j], int(cls[j])) for j in kept]


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    wd = tmp_path_factory.mktemp("detector")
    full = model_path("ssdlite320_mnv3")
    img = read_png(PHOTO)
    x = preprocess(img, 320, 320)
    reg, logits = ort.InferenceSession(str(full), providers=["CPUExecutionProvider"]).run(
        ["bbox_regression", "cls_logits"], {"images": x})
    # Threshold between the 1500th and 1501st foreground scores: enough candidates
    # for NMS to fill K, none of them at the threshold.
    e = np.exp(logits[0].astype(np.float64) - logits[0].max(axis=1, keepdims=True))
    fg = np.sort((e / e.sum(axis=1, keepdims=True))[:, 1:].ravel())[::-1]
    thr = float((fg[1499] + fg[1500]) / 2)
    model = wd / "detector.onnx"
    anchors = export_detector.export(full, model, score_threshold=thr, iou_threshold=IOU, max_output_boxes=K)
    plan = wd / "detector.plan"
    kiln("build", model, "-o", plan)
    (wd / "detector.plan.json").write_text(json.dumps(PRE))  # the default sidecar PLAN.json
    return dict(wd=wd, plan=plan, img=img, ref=oracle(reg[0], logits[0], anchors, thr))


def test_ssdlite_anchors_match_torchvision_layout():
    a = export_detector.ssd_anchors()
    assert a.shape == (3234, 4)
    # First location of the 20x20 map: centre (8, 8); sizes 0.2*320 and sqrt(0.2*0.35)*320.
    np.testing.assert_allclose(a[0], [8, 8, 64, 64], rtol=1e-6)
    np.testing.assert_allclose(a[1, 2], np.sqrt(0.2 * 0.35) * 320, rtol=1e-5)
    np.testing.assert_allclose(a[2, 2:], [64 * np.sqrt(2), 64 / np.sqrt(2)], rtol=1e-5)
    # Last map is 1x1: centre of the image, a box clipped to the full width.
    np.testing.assert_allclose(a[-1, :2], [160, 160], rtol=1e-6)
    assert np.all(a[:, 2:] <= 320 + 1e-3)


def test_detect_matches_numpy_decode_and_nms(detector):
    out = detector["wd"] / "out"
    r = kiln("detect", detector["plan"], PHOTO, "--out", out)
    assert "astronaut.png" in r.stdout
    dets = json.loads((out / "astronaut.json").read_text())
    assert isinstance(dets, list)
    for d in dets:
        assert set(d) == {"image", "bbox", "score", "category_id"}
        assert d["image"] == "astronaut.png" and len(d["bbox"]) == 4 and isinstance(d["category_id"], int)
    ref = detector["ref"]
    assert len(dets) == len(ref) == K
    h, w, _ = detector["img"].shape
    scale = np.array([w / 320, h / 320] * 2)
    for d, (box, s, c) in zip(dets, ref):
        xyxy = np.clip(box * scale, 0, [w, h, w, h])
        want = [xyxy[0], xyxy[1], xyxy[2] - xyxy[0], xyxy[3] - xyxy[1]]
        assert d["category_id"] == c
        np.testing.assert_allclose(d["bbox"], want, atol=0.05)
        np.testing.assert_allclose(d["score"], s, rtol=1e-3)
    png = read_png(out / "astronaut.png")
    assert png.shape == detector["img"].shape
    assert not np.array_equal(png, detector["img"])  # boxes were drawn


def test_detect_threshold_filters(detector):
    out = detector["wd"] / "out_thr"
    ref = detector["ref"]
    cut = float((ref[9][1] + ref[10][1]) / 2)
    kiln("detect", detector["plan"], PHOTO, "--out", out, "--threshold", cut)
    dets = json.loads((out / "astronaut.json").read_text())
    assert [d["category_id"] for d in dets] == [c for _, _, c in ref[:10]]


def test_missing_or_bad_image_writes_nothing(detector, tmp_path):
    out = tmp_path / "out"
    one_line_error(kiln("detect", detector["plan"], PHOTO, tmp_path / "nope.jpg", "--out", out, check=False), 3,
                   "nope.jpg")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    one_line_error(kiln("detect", detector["plan"], bad, "--out", out, check=False), 3, "bad.png")
    assert not out.exists() or not any(out.iterdir())


def test_engine_without_detection_outputs(tmp_path):
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "relu.onnx"))
    kiln("build", tmp_path / "relu.onnx", "-o", tmp_path / "relu.plan")
    r = kiln("detect", tmp_path / "relu.plan", PHOTO, "--out", tmp_path / "out", check=False)
    one_line_error(r, 3, "has no detection outputs (num_detections")
    assert "EfficientNMS_TRT" in r.stderr


def test_normalized_boxes_scale_to_the_original_image(tmp_path):
    """Boxes all within [0, 1.5] are taken as normalized: scaled by the original size, not by input size."""
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.6, 0.1, 0.9, 0.3], [0.58, 0.08, 0.92, 0.32]]], np.float32)
    scores = np.array([[[0.9, 0.1], [0.2, 0.7], [0.1, 0.6]]], np.float32)
    init = [onnx.numpy_helper.from_array(boxes, "b0"), onnx.numpy_helper.from_array(scores, "s"),
            onnx.numpy_helper.from_array(np.array([1, 3, 4], np.int64), "shape")]
    nodes = [helper.make_node("Mul", ["x", "zero"], ["x0"], name="mul"),
             helper.make_node("Reshape", ["x0", "shape"], ["x0r"], name="reshape"),
             helper.make_node("Add", ["x0r", "b0"], ["b"], name="add"),
             helper.make_node("EfficientNMS_TRT", ["b", "s"], ["num_detections", "detection_boxes",
                              "detection_scores", "detection_classes"], name="nms", domain="TRT",
                              score_threshold=0.05, iou_threshold=0.5, max_output_boxes=5, box_coding=0)]
    init.append(onnx.numpy_helper.from_array(np.zeros(1, np.float32), "zero"))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                           for n in ("num_detections", "detection_boxes", "detection_scores", "detection_classes")],
                          init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("TRT", 1)])
    onnx.save(m, str(tmp_path / "nms.onnx"))
    kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "nms.plan")
    kiln("detect", tmp_path / "nms.plan", PHOTO, "--out", tmp_path / "out")
    dets = json.loads((tmp_path / "out" / "astronaut.json").read_text())
    h, w, _ = read_png(PHOTO).shape
    # Box 2 lies around box 1 (IoU 0.06 / 0.0816 = 0.74 > 0.5): suppressed in both classes.
    order = [(0, 0, 0.9), (1, 1, 0.7), (1, 0, 0.2), (0, 1, 0.1)]
    assert [d["category_id"] for d in dets] == [c for _, c, _ in order]
    assert [d["score"] for d in dets] == pytest.approx([s for _, _, s in order])
    for d, (b, _, _) in zip(dets, order):
        x0, y0, x1, y1 = boxes[0, b].astype(np.float64) * [w, h, w, h]
        np.testing.assert_allclose(d["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-3)
