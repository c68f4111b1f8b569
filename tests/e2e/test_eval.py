"""`kiln eval`: a detector engine over a COCO data set -> COCO results.

The detector is tests/models/seed_cbr_ssd.onnx (random weights, 128x128
input, 5 classes with 0 the background) with bench/export_detector.py's
decode + EfficientNMS_TRT tail; the data set is 6 procedural shapes images
(bench/detector/shapes.py, 300x300, so boxes are scaled by 300/128). Checked:
the file is valid COCO results, it equals what `kiln detect` writes for the
same images, its boxes are the engine's outputs mapped to image pixels (input
made here in numpy), and it agrees with onnxruntime + a numpy decode and NMS
(bench/accuracy.py)."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import ROOT, SEED_MODEL, kiln, one_line_error

sys.path.insert(0, str(ROOT / "bench"))
import accuracy  # noqa: E402
import export_detector  # noqa: E402

PRE = {"scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB"}
IN_HW, IMG_HW, BATCH, K = 128, 300, 4, 20
NUM_CLASSES = 5  # seed_cbr_ssd.py; class 0 is the background


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    wd = tmp_path_factory.mktemp("eval")
    ds = wd / "shapes"
    subprocess.run([sys.executable, str(ROOT / "bench" / "detector" / "shapes.py"), "--seed", "9", "--count", "6",
                    "--out", str(ds), "--workers", "1"], check=True, capture_output=True)
    # One anchor per box the head predicts: centre-size in input pixels, spread over the image.
    m = onnx.load(str(SEED_MODEL))
    boxes = 4 * ((IN_HW // 4) ** 2 + (IN_HW // 8) ** 2)  # 4 anchors a location on the 32x32 and 16x16 maps
    rng = np.random.default_rng(5)
    anchors = np.concatenate([rng.uniform(8, IN_HW - 8, (boxes, 2)), rng.uniform(12, 60, (boxes, 2))], 1)
    model = wd / "detector.onnx"
    export_detector.export(SEED_MODEL, model, anchors=anchors.astype(np.float32), score_threshold=0.3,
                           iou_threshold=0.5, max_output_boxes=K)
    assert m.graph.output[0].name == "bbox_regression"
    plan = wd / "detector.plan"
    kiln("build", model, "-o", plan, "--batch", BATCH)
    pre = wd / "pre.json"
    pre.write_text(json.dumps(PRE))
    out = wd / "results.json"
    r = kiln("eval", plan, "--dataset", ds, "--out", out, "--preprocess", pre)
    ann = json.loads((ds / "annotations.json").read_text())
    return dict(wd=wd, ds=ds, model=model, plan=plan, pre=pre, ann=ann, results=json.loads(out.read_text()),
                stdout=r.stdout)


def by_image(results):
    out = {}
    for d in results:
        out.setdefault(d["image_id"], []).append(d)
    return out


def test_results_are_valid_coco(setup):
    res, ann = setup["results"], setup["ann"]
    assert isinstance(res, list) and len(res) > 0
    sizes = {im["id"]: (im["width"], im["height"]) for im in ann["images"]}
    assert len(sizes) == 6
    assert set(by_image(res)) == set(sizes), "every image has detections here"
    for d in res:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}, d
        w, h = sizes[d["image_id"]]
        x, y, bw, bh = d["bbox"]
        assert 0 <= x and 0 <= y and bw >= 0 and bh >= 0, d
        assert x + bw <= w + 1e-9 and y + bh <= h + 1e-9, d
        assert isinstance(d["category_id"], int) and 1 <= d["category_id"] < NUM_CLASSES, d
        assert 0.3 < d["score"] <= 1, d  # above the NMS score threshold
    for dets in by_image(res).values():
        assert len(dets) <= K
        s = [d["score"] for d in dets]
        assert s == sorted(s, reverse=True), "NMS order: highest score first"
    assert "6 images" in setup["stdout"] and f"(batch {BATCH})" in setup["stdout"]


def test_equals_kiln_detect(setup, tmp_path):
    """Same plan, same images: the same boxes, scores and classes, in the same order."""
    ann = setup["ann"]
    images = [setup["ds"] / "images" / im["file_name"] for im in ann["images"]]
    kiln("detect", setup["plan"], *images, "--out", tmp_path, "--preprocess", setup["pre"])
    ev = by_image(setup["results"])
    for im in ann["images"]:
        det = json.loads((tmp_path / (im["file_name"].rsplit(".", 1)[0] + ".json")).read_text())
        got = ev.get(im["id"], [])
        assert len(det) == len(got), im
        for a, b in zip(det, got):
            assert a["image"] == im["file_name"]
            assert a["category_id"] == b["category_id"]
            assert a["score"] == pytest.approx(b["score"], abs=1e-7)
            np.testing.assert_allclose(a["bbox"], b["bbox"], atol=1e-9)


def test_boxes_are_engine_outputs_in_image_pixels(setup, tmp_path):
    """The first batch through `kiln run` on inputs made in numpy (kiln's resize and
    normalization), boxes scaled from 128 to 300 pixels and clipped."""
    ann = setup["ann"]
    first = ann["images"][:BATCH]
    x = np.concatenate([accuracy.to_input(accuracy.read_png(setup["ds"] / "images" / im["file_name"]), IN_HW, IN_HW,
                                          PRE) for im in first])
    np.save(tmp_path / "x.npy", x)
    kiln("run", setup["plan"], "--input", f"images={tmp_path / 'x.npy'}", "--outdir", tmp_path / "out")
    num = np.load(tmp_path / "out" / "num_detections.npy")
    boxes = np.load(tmp_path / "out" / "detection_boxes.npy").astype(np.float64)
    scores = np.load(tmp_path / "out" / "detection_scores.npy")
    classes = np.load(tmp_path / "out" / "detection_classes.npy")
    ev = by_image(setup["results"])
    for s, im in enumerate(first):
        n = int(num[s, 0])
        got = ev[im["id"]]
        assert len(got) == n
        f = IMG_HW / IN_HW
        want = np.clip(boxes[s, :n] * f, 0, IMG_HW)
        want[:, 2:] -= want[:, :2]  # [x, y, w, h]
        np.testing.assert_allclose([d["bbox"] for d in got], want, atol=1e-3)
        np.testing.assert_allclose([d["score"] for d in got], scores[s, :n], atol=1e-6)
        assert [d["category_id"] for d in got] == classes[s, :n].tolist()


def test_agrees_with_onnxruntime_and_numpy_nms(setup, tmp_path):
    """bench/accuracy.py's reference path: onnxruntime on the pre-NMS model, decode and
    NMS in numpy from the exported node's attributes. Float differences may reorder
    near ties, so the 10 best detections of each image are compared."""
    out = tmp_path / "ort.json"
    accuracy.run_onnxruntime(setup["model"], SEED_MODEL, setup["ds"], PRE, out)
    ref, got = by_image(json.loads(out.read_text())), by_image(setup["results"])
    assert set(ref) == set(got)
    for img in ref:
        r, g = ref[img][:10], got[img][:10]
        assert [d["category_id"] for d in r] == [d["category_id"] for d in g], img
        np.testing.assert_allclose([d["score"] for d in r], [d["score"] for d in g], atol=1e-4)
        np.testing.assert_allclose([d["bbox"] for d in r], [d["bbox"] for d in g], atol=0.05)


def test_bad_dataset_errors(setup, tmp_path):
    r = kiln("eval", setup["plan"], "--dataset", tmp_path, "--out", tmp_path / "r.json", check=False)
    one_line_error(r, 3, "annotations.json")
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "annotations.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "missing.png"}]}))
    r = kiln("eval", setup["plan"], "--dataset", bad, "--out", tmp_path / "r.json", check=False)
    one_line_error(r, 3, "missing.png")
    assert not (tmp_path / "r.json").exists()


def test_accuracy_score_matches_numpy_coco_eval(setup, tmp_path):
    """bench/accuracy.py score (pycocotools) against bench/detector/coco_eval.py (numpy),
    on detections made from the ground truth: jittered boxes, random scores, and
    some false positives, so the mAP is neither 0 nor 1."""
    pytest.importorskip("pycocotools")
    sys.path.insert(0, str(ROOT / "bench" / "detector"))
    import coco_eval
    ann = setup["ann"]
    rng = np.random.default_rng(11)

    def fake(jitter):
        out = []
        for a in ann["annotations"]:
            x, y, w, h = a["bbox"]
            d = rng.normal(0, jitter, 4) * [w, h, w, h]
            out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "bbox": [x + d[0], y + d[1], max(w + d[2], 1), max(h + d[3], 1)], "score": rng.random()})
        for im in ann["images"]:
            out.append({"image_id": im["id"], "category_id": int(rng.integers(1, 10)),
                        "bbox": [10.0, 10.0, 50.0, 40.0], "score": rng.random()})
        return out

    run = tmp_path / "run"
    run.mkdir()
    dets = {"folded_fp32": fake(0.03), "folded_int8_entropy": fake(0.12)}
    for name, d in dets.items():
        (run / f"{name}.json").write_text(json.dumps(d))
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "score", str(run), "--val", str(setup["ds"])],
                       capture_output=True, text=True, check=True)
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:6]] for l in r.stdout.splitlines()
            if l.startswith("| folded_")}
    want = {n: coco_eval.evaluate(ann, d) for n, d in dets.items()}
    assert 0.05 < want["folded_int8_entropy"]["mAP"] < want["folded_fp32"]["mAP"] < 0.99, want
    for n, (m, ap50, dm, _) in rows.items():
        assert float(m) == pytest.approx(want[n]["mAP"], abs=6e-5), (n, m, want[n])
        assert float(ap50) == pytest.approx(want[n]["AP50"], abs=6e-5), (n, ap50, want[n])
    assert float(rows["folded_int8_entropy"][2]) == pytest.approx(
        want["folded_int8_entropy"]["mAP"] - want["folded_fp32"]["mAP"], abs=1.1e-4)
    assert rows["folded_fp32"][2] == "-"
