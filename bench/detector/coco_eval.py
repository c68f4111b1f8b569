"""COCO-style box mAP in numpy, for machines without pycocotools.

Follows the COCO bbox evaluation for the "all" area range: per image and category,
detections sorted by score (at most max_dets), each matched greedily to the unmatched
ground truth box of highest IoU at or above the threshold; precision made monotone
and sampled at 101 recall points; AP averaged over categories that have ground
truth and IoU thresholds 0.50:0.05:0.95. No crowd boxes (the shapes set has none).
pycocotools remains the reference; this is a cross-check that needs only numpy.

    python3 bench/detector/coco_eval.py ANNOTATIONS.json DETECTIONS
DETECTIONS: a COCO results file ([{"image_id", "category_id", "bbox": [x,y,w,h],
"score"}]) or a directory of `kiln detect --out` files (<stem>.json lists whose
"image" is the file name in the annotations).
"""
import argparse
import json
import os
import sys

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _iou_xywh(d, g):
    """IoU of [D,4] and [G,4] boxes in [x,y,w,h] -> [D,G]."""
    dx1, dy1 = d[:, 0] + d[:, 2], d[:, 1] + d[:, 3]
    gx1, gy1 = g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    iw = np.minimum(dx1[:, None], gx1[None]) - np.maximum(d[:, 0:1], g[None, :, 0])
    ih = np.minimum(dy1[:, None], gy1[None]) - np.maximum(d[:, 1:2], g[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def evaluate(coco_gt, detections, max_dets=100):
    """coco_gt: the annotations dict; detections: list of result dicts.
    Returns {"mAP", "AP50", "AP75", "per_class": {name: AP}}."""
    cats = [c["id"] for c in coco_gt["categories"]]
    names = {c["id"]: c["name"] for c in coco_gt["categories"]}
    gts, dts = {}, {}
    for a in coco_gt["annotations"]:
        gts.setdefault((a["image_id"], a["category_id"]), []).append(a["bbox"])
    for d in detections:
        dts.setdefault((d["image_id"], d["category_id"]), []).append((d["score"], d["bbox"]))
    T = len(IOU_THRESHOLDS)
    precision = np.full((T, len(RECALL_POINTS), len(cats)), -1.0)
    for k, cat in enumerate(cats):
        scores, matched, n_gt = [], [], 0
        images = {i for (i, c) in list(gts) + list(dts) if c == cat}
        for img in sorted(images):
            g = np.array(gts.get((img, cat), []), np.float64).reshape(-1, 4)
            dl = sorted(dts.get((img, cat), []), key=lambda t: -t[0])[:max_dets]
            n_gt += len(g)
            if not dl:
                continue
            d = np.array([b for _, b in dl], np.float64).reshape(-1, 4)
            ious = _iou_xywh(d, g) if len(g) else np.zeros((len(d), 0))
            m = np.zeros((T, len(d)), bool)
            for t, thr in enumerate(IOU_THRESHOLDS):
                taken = np.zeros(len(g), bool)
                for i in range(len(d)):
                    best, bj = min(thr, 1 - 1e-10), -1
                    for j in range(len(g)):
                        if not taken[j] and ious[i, j] >= best:
                            best, bj = ious[i, j], j
                    if bj >= 0:
                        taken[bj] = True
                        m[t, i] = True
            scores.extend(s for s, _ in dl)
            matched.append(m)
        if n_gt == 0:
            continue
        if not scores:
            precision[:, :, k] = 0
            continue
        order = np.argsort(-np.array(scores), kind="mergesort")
        tp = np.concatenate(matched, axis=1)[:, order]
        tps, fps = np.cumsum(tp, 1), np.cumsum(~tp, 1)
        for t in range(T):
            rc = tps[t] / n_gt
            pr = tps[t] / (tps[t] + fps[t] + np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1])[::-1]
            idx = np.searchsorted(rc, RECALL_POINTS, side="left")
            q = np.zeros(len(RECALL_POINTS))
            ok = idx < len(pr)
            q[ok] = pr[idx[ok]]
            precision[t, :, k] = q

    def ap(p):
        p = p[p > -1]
        return float(p.mean()) if p.size else float("nan")

    per_class = {names[c]: ap(precision[:, :, k]) for k, c in enumerate(cats)}
    return {"mAP": ap(precision), "AP50": ap(precision[0]), "AP75": ap(precision[5]), "per_class": per_class}


def load_detections(path, coco_gt):
    """A results list, or a `kiln detect --out` directory mapped through file names."""
    if os.path.isdir(path):
        ids = {im["file_name"]: im["id"] for im in coco_gt["images"]}
        out = []
        for name in sorted(os.listdir(path)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(path, name)) as f:
                for d in json.load(f):
                    if d["image"] not in ids:
                        raise SystemExit(f"{path}/{name}: image '{d['image']}' is not in the annotations")
                    out.append({"image_id": ids[d["image"]], "category_id": int(d["category_id"]),
                                "bbox": d["bbox"], "score": float(d["score"])})
        return out
    with open(path) as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description="COCO-style box mAP (numpy).")
    ap.add_argument("annotations")
    ap.add_argument("detections", help="COCO results JSON, or a `kiln detect --out` directory")
    a = ap.parse_args(argv)
    with open(a.annotations) as f:
        gt = json.load(f)
    r = evaluate(gt, load_detections(a.detections, gt))
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    sys.exit(main())
