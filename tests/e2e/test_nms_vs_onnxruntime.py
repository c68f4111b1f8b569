"""NMS against onnxruntime.

kiln refuses ONNX NonMaxSuppression (its output size depends on the data and
kiln's engines have static shapes), and says to use EfficientNMS_TRT. So the
comparison runs the same boxes through EfficientNMS_TRT in kiln (built in, no
--plugins) and NonMaxSuppression in onnxruntime, and requires the same
selected (image, class, box) triples, with kiln's scores and boxes matching
the inputs they came from."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import kiln


def ort_nms(boxes, scores_ncb, center, iou, score_thr, per_class):
    n, b, _ = boxes.shape
    c = scores_ncb.shape[1]
    consts = [helper.make_tensor("max_per_class", TensorProto.INT64, [1], [per_class]),
              helper.make_tensor("iou", TensorProto.FLOAT, [1], [iou]),
              helper.make_tensor("score", TensorProto.FLOAT, [1], [score_thr])]
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max_per_class", "iou", "score"], ["sel"],
                            center_point_box=center)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, b, 4]),
                                        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, c, b])],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, None)], initializer=consts)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    sel = sess.run(None, {"boxes": boxes, "scores": scores_ncb})[0]
    return {tuple(int(v) for v in row) for row in sel}


def kiln_nms(tmp_path, boxes, scores_nbc, coding, iou, score_thr, k):
    n, b, _ = boxes.shape
    c = scores_nbc.shape[2]
    node = helper.make_node("EfficientNMS_TRT", ["boxes", "scores"], ["num", "det_boxes", "det_scores", "det_classes"],
                            name="nms", domain="TRT", score_threshold=score_thr, iou_threshold=iou,
                            max_output_boxes=k, background_class=-1, score_activation=0, box_coding=coding,
                            plugin_version="1")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, b, 4]),
                                        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, b, c])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                           for o in ("num", "det_boxes", "det_scores", "det_classes")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("TRT", 1)])
    onnx.save(m, str(tmp_path / "nms.onnx"))
    kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "nms.plan")
    np.save(tmp_path / "boxes.npy", boxes)
    np.save(tmp_path / "scores.npy", scores_nbc)
    kiln("run", tmp_path / "nms.plan", "--input", f"boxes={tmp_path / 'boxes.npy'}",
         "--input", f"scores={tmp_path / 'scores.npy'}", "--outdir", tmp_path / "out")
    return {name: np.load(tmp_path / "out" / f"{name}.npy") for name in ("num", "det_boxes", "det_scores", "det_classes")}


def corners(boxes, coding):
    """Ordered corners of every input box, as kiln reports them (float32 math)."""
    if coding == 1:
        half = np.float32(0.5)
        c0, c1, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        boxes = np.stack([c0 - half * w, c1 - half * h, c0 + half * w, c1 + half * h], axis=-1)
    lo = np.minimum(boxes[..., :2], boxes[..., 2:])
    hi = np.maximum(boxes[..., :2], boxes[..., 2:])
    return np.concatenate([lo, hi], axis=-1)


def random_case(rng, n, b, c, coding, ties=False, degenerate=False):
    # Boxes cluster around a few objects, as a detector's do, so many overlap.
    objects = rng.random((n, 6, 2))
    pick = rng.integers(0, 6, (n, b))
    centre = np.take_along_axis(objects, pick[..., None].repeat(2, axis=-1), axis=1)
    xc, yc = centre[..., 0] + 0.04 * rng.standard_normal((n, b)), centre[..., 1] + 0.04 * rng.standard_normal((n, b))
    w, h = 0.15 + 0.2 * rng.random((n, b)), 0.15 + 0.2 * rng.random((n, b))
    if degenerate:
        w[:, ::7] = 0.0
    if coding == 1:
        boxes = np.stack([xc, yc, w, h], axis=-1)
    else:
        # ONNX's corner layout is [y1, x1, y2, x2]; both kiln and onnxruntime order each axis themselves.
        boxes = np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
        flip = rng.random((n, b)) < 0.1
        boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    scores = rng.random((n, b, c))
    if ties:
        scores = np.floor(scores * 5) / 5
        boxes[:, 1::5] = boxes[:, ::5][:, : boxes[:, 1::5].shape[1]]  # exact duplicates of earlier boxes
    return boxes.astype(np.float32), scores.astype(np.float32)


CASES = [
    # n, b, c, coding, iou, score, ties, degenerate
    (1, 40, 1, 0, 0.5, 0.0, False, False),
    (2, 120, 3, 0, 0.45, 0.3, False, False),
    (3, 80, 5, 1, 0.6, 0.2, False, False),
    (2, 100, 4, 0, 0.3, 0.1, True, False),
    (2, 90, 2, 1, 0.5, 0.2, True, True),
    (1, 200, 1, 0, 0.7, 0.5, False, True),
    (2, 0, 3, 0, 0.5, 0.1, False, False),
]


@pytest.mark.parametrize("n,b,c,coding,iou,score_thr,ties,degenerate", CASES)
def test_efficient_nms_selects_what_onnxruntime_selects(tmp_path, n, b, c, coding, iou, score_thr, ties, degenerate):
    rng = np.random.default_rng(n * 1000 + b * 10 + c)
    boxes, scores = random_case(rng, n, b, c, coding, ties, degenerate)
    k = max(b * c, 1)  # room for everything, so no detection is cut
    ref = ort_nms(boxes, np.ascontiguousarray(scores.transpose(0, 2, 1)), coding, iou, score_thr, max(b, 1))
    out = kiln_nms(tmp_path, boxes, scores, coding, iou, score_thr, k)

    assert out["num"].shape == (n, 1) and out["det_boxes"].shape == (n, k, 4)
    cand = corners(boxes, coding)
    got = set()
    for img in range(n):
        count = int(out["num"][img, 0])
        sc = out["det_scores"][img, :count]
        assert np.all(sc[:-1] >= sc[1:]), "detections must come highest score first"
        for j in range(count):
            cls = int(out["det_classes"][img, j])
            box = out["det_boxes"][img, j]
            # Which input box is it? The one with these corners and this score.
            match = np.nonzero(np.all(cand[img] == box, axis=-1) & (scores[img, :, cls] == sc[j]))[0]
            assert len(match) >= 1, (img, j, box)
            idx = next(int(m) for m in match if (img, cls, int(m)) not in got)
            got.add((img, cls, idx))
        assert np.all(out["det_boxes"][img, count:] == 0) and np.all(out["det_scores"][img, count:] == 0)
        assert np.all(out["det_classes"][img, count:] == 0)
    assert got == ref


def test_onnx_nonmaxsuppression_is_refused_with_a_pointer(tmp_path):
    boxes, scores = random_case(np.random.default_rng(0), 1, 10, 1, 0)
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], name="nms")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 10, 4]),
                                        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, 10])],
                          [helper.make_tensor_value_info("sel", TensorProto.INT64, None)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "nms.onnx"))
    r = kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "x.plan", check=False)
    assert r.returncode == 4, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "NonMaxSuppression 'nms'" in lines[0] and "EfficientNMS_TRT" in lines[0], r.stderr
