"""kiln's NMS against torchvision.ops.batched_nms (skipped where torchvision
is not installed; the GPU machine has it).

EfficientNMS_TRT in kiln, with room for every candidate, must keep exactly the
(image, class, box) triples that batched_nms keeps from the candidates above
the score threshold, highest score first. torchvision runs in float64 on the
float32 corners, which is kiln's IoU arithmetic (README: IoU in double), so
no pair near the threshold can round differently. Both the CPU and, where a
GPU is present, the CUDA plans are compared."""
import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import kiln

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def gpu_present():
    if not shutil.which("nvidia-smi"):
        return False
    return subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


def kiln_nms(tmp_path, device, boxes, scores, iou, thr, k):
    n, b, c = scores.shape
    node = helper.make_node("EfficientNMS_TRT", ["boxes", "scores"], ["num", "det_boxes", "det_scores", "det_classes"],
                            name="nms", score_threshold=thr, iou_threshold=iou, max_output_boxes=k)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [n, b, 4]),
                                        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, b, c])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                           for o in ("num", "det_boxes", "det_scores", "det_classes")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "nms.onnx"))
    kiln("build", tmp_path / "nms.onnx", "-o", tmp_path / "nms.plan", "--device", device)
    np.save(tmp_path / "boxes.npy", boxes)
    np.save(tmp_path / "scores.npy", scores)
    kiln("run", tmp_path / "nms.plan", "--input", f"boxes={tmp_path / 'boxes.npy'}",
         "--input", f"scores={tmp_path / 'scores.npy'}", "--outdir", tmp_path / "out")
    return {o: np.load(tmp_path / "out" / f"{o}.npy") for o in ("num", "det_boxes", "det_scores", "det_classes")}


def torchvision_nms(boxes, scores, iou, thr):
    """Per image, the kept (class, box) pairs from batched_nms, highest score first."""
    out = []
    for img in range(scores.shape[0]):
        b_idx, c_idx = np.nonzero(scores[img] > thr)
        s = torch.from_numpy(scores[img][b_idx, c_idx].astype(np.float64))
        bx = torch.from_numpy(boxes[img][b_idx].astype(np.float64))
        keep = torchvision.ops.batched_nms(bx, s, torch.from_numpy(c_idx), iou).numpy()
        out.append([(int(c_idx[j]), int(b_idx[j])) for j in keep])
    return out


CASES = [  # n, b, c, iou, thr
    (1, 300, 1, 0.5, 0.05),
    (2, 500, 5, 0.45, 0.2),
    (4, 200, 21, 0.6, 0.3),
    (1, 2000, 3, 0.3, 0.5),
]
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(not gpu_present(), reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n,b,c,iou,thr", CASES)
def test_efficient_nms_keeps_what_batched_nms_keeps(tmp_path, device, n, b, c, iou, thr):
    rng = np.random.default_rng(b + c)
    centre = rng.random((n, 8, 2))[:, rng.integers(0, 8, b)]  # boxes cluster on a few objects
    xy = centre + 0.05 * rng.standard_normal((n, b, 2))
    wh = 0.1 + 0.25 * rng.random((n, b, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=-1).astype(np.float32)
    scores = rng.random((n, b, c)).astype(np.float32)
    k = b * c
    out = kiln_nms(tmp_path, device, boxes, scores, iou, thr, k)
    ref = torchvision_nms(boxes, scores, iou, thr)
    for img in range(n):
        count = int(out["num"][img, 0])
        assert count == len(ref[img]), (img, count, len(ref[img]))
        got = []
        for j in range(count):
            cls = int(out["det_classes"][img, j])
            match = np.nonzero(np.all(boxes[img] == out["det_boxes"][img, j], axis=-1))[0]
            assert len(match) == 1, (img, j)
            got.append((cls, int(match[0])))
        assert set(got) == set(ref[img])
        ref_scores = np.array([scores[img, bb, cc] for cc, bb in ref[img]])
        assert np.array_equal(out["det_scores"][img, :count], ref_scores), "same order: highest score first"
