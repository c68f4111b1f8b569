"""NMS against onnxruntime.

Two comparisons on the same random boxes: EfficientNMS_TRT in kiln against
NonMaxSuppression in onnxruntime (the same selected (image, class, box)
triples, with kiln's scores and boxes matching the inputs they came from),
and ONNX NonMaxSuppression itself imported by kiln (lowered onto the same
kernels) against onnxruntime: the same rows in the same order, on the CPU and,
where one is present, the GPU."""
import shutil
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import kiln, one_line_error


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
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)  # older onnxruntimes cap the IR version
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


def gpu_present():
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def onnx_nms_model(path, n, b, c, center, per_class, iou, score_thr, consumer=None, dynamic_m=False):
    """A model of one ONNX NonMaxSuppression (score_thr None: input omitted)."""
    consts = [helper.make_tensor("iou", TensorProto.FLOAT, [1], [iou])]
    ins = ["boxes", "scores", "max_per_class", "iou"]
    if not dynamic_m:
        consts.append(helper.make_tensor("max_per_class", TensorProto.INT64, [1], [per_class]))
    if score_thr is not None:
        consts.append(helper.make_tensor("score", TensorProto.FLOAT, [1], [score_thr]))
        ins.append("score")
    nodes = [helper.make_node("NonMaxSuppression", ins, ["sel"], name="nms", center_point_box=center)]
    out = "sel"
    if consumer:
        nodes.append(helper.make_node(consumer, ["sel"], ["after"], name="after_nms", to=TensorProto.FLOAT))
        out = "after"
    inputs = [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, b, 4]),
              helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, c, b])]
    if dynamic_m:
        inputs.append(helper.make_tensor_value_info("max_per_class", TensorProto.INT64, [1]))
    g = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(out, TensorProto.INT64, None)],
                          initializer=consts)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)  # older onnxruntimes cap the IR version
    onnx.save(m, str(path))
    return m


ONNX_CASES = [
    # n, b, c, center, per_class, iou, score (None: no threshold input), ties, degenerate
    (1, 40, 1, 0, 5, 0.5, 0.0, False, False),
    (2, 120, 3, 0, 10, 0.45, 0.3, False, False),
    (3, 80, 5, 1, 1, 0.6, 0.2, False, False),
    (2, 100, 4, 0, 1000, 0.3, 0.1, True, False),
    (2, 90, 2, 1, 3, 0.5, None, True, True),
    (1, 200, 1, 0, 200, 0.7, 0.5, False, True),
    (2, 60, 20, 0, 2, 0.5, None, False, False),
    (2, 0, 3, 0, 4, 0.5, 0.1, False, False),
    (1, 30, 2, 0, 0, 0.5, 0.1, False, False),
]
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(not gpu_present(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,b,c,center,per_class,iou,score_thr,ties,degenerate", ONNX_CASES)
def test_onnx_nonmaxsuppression_matches_onnxruntime(tmp_path, device, n, b, c, center, per_class, iou, score_thr,
                                                    ties, degenerate):
    """ONNX NonMaxSuppression imported as is: the same rows in the same order as onnxruntime."""
    rng = np.random.default_rng(n * 1000 + b * 10 + c + per_class)
    boxes, scores = random_case(rng, n, b, c, center, ties, degenerate)
    scores_ncb = np.ascontiguousarray(scores.transpose(0, 2, 1))
    model = onnx_nms_model(tmp_path / "nms.onnx", n, b, c, center, per_class, iou, score_thr)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"boxes": boxes, "scores": scores_ncb})[0]
    kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "nms.plan", "--device", device)
    np.save(tmp_path / "boxes.npy", boxes)
    np.save(tmp_path / "scores.npy", scores_ncb)
    kiln("run", tmp_path / "nms.plan", "--input", f"boxes={tmp_path / 'boxes.npy'}",
         "--input", f"scores={tmp_path / 'scores.npy'}", "--outdir", tmp_path / "out")
    got = np.load(tmp_path / "out" / "sel.npy")
    assert got.dtype == np.int64 and got.shape == ref.shape, (got.shape, ref.shape)
    assert np.array_equal(got, ref)
    if per_class > 0 and b > 0:
        info = kiln("inspect", tmp_path / "nms.plan").stdout
        assert f"sel int64[<={n * c * min(per_class, b)},3]" in info, info


def test_onnx_nonmaxsuppression_output_read_by_a_node_is_refused(tmp_path):
    onnx_nms_model(tmp_path / "nms.onnx", 1, 10, 1, 0, 5, 0.5, 0.1, consumer="Cast")
    r = kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "x.plan", check=False)
    one_line_error(r, 4, "Cast 'after_nms'", "'sel'", "graph output")
    assert not (tmp_path / "x.plan").exists()


def test_onnx_nonmaxsuppression_needs_constant_limits(tmp_path):
    onnx_nms_model(tmp_path / "nms.onnx", 1, 10, 1, 0, 5, 0.5, 0.1, dynamic_m=True)
    r = kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "x.plan", check=False)
    one_line_error(r, 4, "NonMaxSuppression 'nms'", "max_output_boxes_per_class", "constant")
