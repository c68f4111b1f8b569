"""Detector accuracy across precisions: the mAP table of bench/ACCURACY.md.

The shapes detector (bench/detector/) is built by kiln in FP32, FP16 (GPU) and
INT8 (entropy, min-max and percentile calibration, and entropy with the
sensitivity guard), from both of its exports (BatchNormalization kept, and
folded by the exporter); `kiln eval` runs each engine over the validation set
and writes COCO results. onnxruntime runs the pre-NMS export in FP32, with the
box decoding and NMS done here in numpy as the exported EfficientNMS_TRT node
is configured (its attributes and the tail's constants are read from the
ONNX file), as the reference outside kiln.

    # on the machine that runs the engines: numpy, onnxruntime and kiln only
    python3 bench/detector/shapes.py --seed 2 --count 500 --out /tmp/shapes-val
    python3 bench/detector/shapes.py --seed 3 --count 256 --out /tmp/shapes-calib
    python3 bench/accuracy.py run --device cuda --model DET/detector_folded.onnx --bn-model DET/detector_bn.onnx \\
        --val /tmp/shapes-val --calib /tmp/shapes-calib --out OUT
    # anywhere with pycocotools
    python3 bench/accuracy.py score OUT [OUT2 ...] --val /tmp/shapes-val

`run` writes OUT/<config>.json (COCO results), OUT/onnxruntime_fp32.json and
OUT/meta.json (commands, build and eval times, what `kiln inspect` says about
the INT8 layers); `score` prints the Markdown table: mAP@[.5:.95], AP50, and
the change against the same export's kiln FP32 engine.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INT8_METHODS = ("entropy", "minmax", "percentile")


# ---------------------------------------------------------------- configurations

def configs(device, guard_bound):
    """(name, extra `kiln build` flags, needs calibration) for one export."""
    out = [("fp32", [], False)]
    if device == "cuda":
        out.append(("fp16", ["--fp16"], False))
    for m in INT8_METHODS:
        out.append((f"int8_{m}", ["--int8", "--calib-method", m], True))
    for m in INT8_METHODS:
        out.append((f"int8_{m}_guard", ["--int8", "--calib-method", m, "--int8-guard",
                                        "--int8-guard-bound", repr(guard_bound)], True))
    return out


def norm_flags(pre):
    """The --mean/--std/--scale/--bgr flags `kiln build --calib` takes for images."""
    f = ["--scale", repr(float(pre.get("scale", 1 / 255)))]
    if "mean" in pre:
        f += ["--mean", ",".join(repr(float(v)) for v in pre["mean"])]
    if "std" in pre:
        f += ["--std", ",".join(repr(float(v)) for v in pre["std"])]
    if pre.get("channel_order", "RGB") == "BGR":
        f.append("--bgr")
    return f


def kiln(binary, *args, log=None):
    cmd = [str(binary), *map(str, args)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    secs = time.perf_counter() - t
    if log is not None:
        log.append({"cmd": " ".join(cmd), "seconds": round(secs, 3), "rc": r.returncode})
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout, secs


def model_input(model):
    """(name, H, W) of the model's image input [N,3,H,W]."""
    import onnx
    i = onnx.load(str(model), load_external_data=False).graph.input[0]
    dims = [d.dim_value for d in i.type.tensor_type.shape.dim]
    return i.name, dims[2], dims[3]


def layer_compare(binary, model, plan, sample, json_out):
    """`kiln compare` on one image: the plan's worst tensors against kiln's FP32 run."""
    name = model_input(model)[0]
    try:
        kiln(binary, "compare", model, plan, "--input", f"{name}={sample}", "--json", json_out)
    except RuntimeError as e:
        return {"error": str(e)}
    rep = json.loads(Path(json_out).read_text())
    worst = [t for t in rep["tensors"] if not t["network_output"]][:3]
    return {"worst": [{k: t[k] for k in ("tensor", "layer", "op_type", "precision", "cosine", "max_rel")}
                      for t in worst],
            "outputs": {t["tensor"]: t["cosine"] for t in rep["outputs"]}, "file": str(json_out)}


def inspect_lines(binary, plan):
    """What `kiln inspect` says about precisions: the int8 / guard / precision-choice lines."""
    out, _ = kiln(binary, "inspect", plan)
    keep = ("int8:", "precision choice:", "reformat layers")
    return [l.strip() for l in out.splitlines() if l.strip().startswith(keep)]


# ---------------------------------------------------------------- images (PNG, numpy + zlib)

def read_png(path):
    """8-bit non-interlaced PNG (grey, RGB, grey+alpha, RGBA) -> uint8 [H,W,3] RGB."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced grey/RGB(A) PNGs are read here")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, w * channels + 1)
    rows = np.zeros((h, w * channels), np.uint8)
    prev = np.zeros(w * channels, np.int32)
    for y in range(h):
        kind, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average, Paeth depend on the pixel to the left: one pass per byte
            cur = np.zeros_like(line)
            for i in range(len(line)):
                a = cur[i - channels] if i >= channels else 0
                b, c = prev[i], prev[i - channels] if i >= channels else 0
                if kind == 1:
                    p = a
                elif kind == 3:
                    p = (a + b) // 2
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + p) & 255
        rows[y] = cur
        prev = cur
    img = rows.reshape(h, w, channels)
    if channels in (1, 2):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def to_input(img, out_h, out_w, pre):
    """kiln's preprocessing (tools/kiln/image.cpp): bilinear resize with pixel centres
    aligned, then (p * scale - mean) / std in double, rounded to float32; NCHW."""
    h, w, _ = img.shape
    def axis(n_out, n_in):
        f = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
        i0 = f.astype(np.int64)
        return i0, np.minimum(i0 + 1, n_in - 1), f - i0
    y0, y1, wy = axis(out_h, h)
    x0, x1, wx = axis(out_w, w)
    p = img.astype(np.float64)
    top = p[y0][:, x0] * (1 - wx)[None, :, None] + p[y0][:, x1] * wx[None, :, None]
    bot = p[y1][:, x0] * (1 - wx)[None, :, None] + p[y1][:, x1] * wx[None, :, None]
    p = top * (1 - wy)[:, None, None] + bot * wy[:, None, None]
    if pre.get("channel_order", "RGB") == "BGR":
        p = p[:, :, ::-1]
    f32 = lambda v: np.float64(np.float32(v))  # kiln keeps these values as float
    mean = np.array([f32(v) for v in pre.get("mean", [0, 0, 0])])
    std = np.array([f32(v) for v in pre.get("std", [1, 1, 1])])
    x = (p * f32(pre.get("scale", 1 / 255)) - mean) / std
    return np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1)[None])


# ---------------------------------------------------------------- decode + NMS (numpy)

def nms_config(full_model_path, pre_nms_outputs):
    """The EfficientNMS_TRT node of the full export, its attributes, the constants,
    and the tail of nodes between the pre-NMS model's outputs and the node's inputs."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(str(full_model_path)).graph
    nms = [n for n in g.node if n.op_type == "EfficientNMS_TRT"]
    if len(nms) != 1:
        raise SystemExit(f"{full_model_path}: expected one EfficientNMS_TRT node, found {len(nms)}")
    get = onnx.helper.get_attribute_value
    attrs = {a.name: get(a) for a in nms[0].attribute}
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in g.node if n.op_type == "Constant"})
    producer = {o: n for n in g.node for o in n.output}
    tail, seen = [], set()

    def visit(name):  # depth first, so each node follows what it reads
        if name in consts or name in pre_nms_outputs or name in seen or name not in producer:
            return
        seen.add(name)
        for i in producer[name].input:
            visit(i)
        n = producer[name]
        tail.append((n.op_type, list(n.input), n.output[0], {a.name: get(a) for a in n.attribute}))

    for name in nms[0].input[:2]:
        visit(name)
    return list(nms[0].input), attrs, consts, tail


def run_tail(tail, consts, values):
    """Evaluates the decode tail (element-wise ops, Softmax) in float32 numpy."""
    env = dict(consts)
    env.update(values)
    ops = {"Div": np.divide, "Mul": np.multiply, "Add": np.add, "Sub": np.subtract,
           "Min": np.minimum, "Max": np.maximum}
    for op, inputs, output, attrs in tail:
        ins = [env[i] for i in inputs if i]
        if op in ops:
            r = ins[0]
            for b in ins[1:]:
                r = ops[op](r, b)
        elif op == "Softmax":  # opset 13+: one axis, default the last
            ax = attrs.get("axis", -1)
            e = np.exp(ins[0] - ins[0].max(axis=ax, keepdims=True))
            r = e / e.sum(axis=ax, keepdims=True)
        elif op == "Sigmoid":
            r = 1 / (1 + np.exp(-ins[0]))
        elif op == "Exp":
            r = np.exp(ins[0])
        else:
            raise SystemExit(f"the decode tail holds a {op} node, which run_tail does not evaluate")
        env[output] = np.asarray(r, np.float32)
    return env


def decode_boxes(boxes, anchors, coding):
    """EfficientNMS_TRT's decode (src/plugins/efficient_nms/README.md, step 1) -> ordered corners."""
    b = boxes.astype(np.float32)
    if anchors is not None:
        a = np.broadcast_to(anchors.astype(np.float32), b.shape)
    if coding == 1:
        if anchors is not None:
            xc = b[:, 0] * a[:, 2] + a[:, 0]
            yc = b[:, 1] * a[:, 3] + a[:, 1]
            w = (np.exp(b[:, 2].astype(np.float64)) * a[:, 2].astype(np.float64)).astype(np.float32)
            h = (np.exp(b[:, 3].astype(np.float64)) * a[:, 3].astype(np.float64)).astype(np.float32)
        else:
            xc, yc, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        half = np.float32(0.5)
        c = np.stack([xc - half * w, yc - half * h, xc + half * w, yc + half * h], axis=1)
    else:
        c = b + a if anchors is not None else b.copy()
    x0, x1 = np.minimum(c[:, 0], c[:, 2]), np.maximum(c[:, 0], c[:, 2])
    y0, y1 = np.minimum(c[:, 1], c[:, 3]), np.maximum(c[:, 1], c[:, 3])
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)


def nms_image(boxes, scores, attrs):
    """Greedy per-class NMS as EfficientNMS_TRT (README steps 2-5) for one image:
    boxes [B,4] ordered corners, scores [B,C]. Returns (boxes [k,4], scores [k], classes [k])."""
    thr = np.float32(attrs["score_threshold"])
    iou_thr = float(attrs["iou_threshold"])
    k_max = int(attrs["max_output_boxes"])
    bg = int(attrs.get("background_class", -1))
    agnostic = int(attrs.get("class_agnostic", 0)) == 1
    s = scores.astype(np.float32)
    if int(attrs.get("score_activation", 0)):
        t = float(attrs["score_threshold"])
        lim = -np.inf if t <= 0 else (np.inf if t >= 1 else np.log(t / (1 - t)))
        keep = s.astype(np.float64) > lim
    else:
        keep = s > thr
    if 0 <= bg < s.shape[1]:
        keep[:, bg] = False
    bi, ci = np.nonzero(keep)
    sc = s[bi, ci]
    order = np.lexsort((ci, bi, -sc.astype(np.float64)))  # score desc, then box, then class
    bi, ci, sc = bi[order], ci[order], sc[order]
    kept = []
    groups = {0: np.arange(len(bi))} if agnostic else {c: np.nonzero(ci == c)[0] for c in np.unique(ci)}
    for idx in groups.values():
        kept.extend(greedy(boxes[bi[idx]], iou_thr, idx))
    kept = np.array(sorted(kept), np.int64)[:k_max]  # back in the global order, first K
    out_scores = sc[kept]
    if int(attrs.get("score_activation", 0)):
        out_scores = (1.0 / (1.0 + np.exp(-out_scores.astype(np.float64)))).astype(np.float32)
    return boxes[bi[kept]], out_scores, ci[kept]


def greedy(b, iou_thr, ids):
    """Indices (from `ids`) that survive greedy suppression, in order; IoU in double,
    degenerate boxes never suppress or get suppressed."""
    b = b.astype(np.float64)
    ext0, ext1 = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    good = (ext0 > 0) & (ext1 > 0)
    area = ext0 * ext1
    alive = np.ones(len(b), bool)
    out = []
    for i in range(len(b)):
        if not alive[i]:
            continue
        out.append(int(ids[i]))
        if not good[i]:
            continue
        j = np.arange(i + 1, len(b))
        j = j[alive[j] & good[j]]
        if not len(j):
            continue
        i0 = np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0])
        i1 = np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1])
        ok = (i0 > 0) & (i1 > 0)
        inter = i0 * i1
        union = (area[i] + area[j]) - inter
        sup = ok & (inter / np.where(ok, union, 1.0) > iou_thr)
        alive[j[sup]] = False
    return out


def run_onnxruntime(full_model, prenms_model, val_dir, pre, out_path, threads=0):
    """FP32 onnxruntime on the pre-NMS export, decode + NMS in numpy; writes COCO results."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(prenms_model), opts, providers=["CPUExecutionProvider"])
    nms_inputs, attrs, consts, tail = nms_config(full_model, {o.name for o in sess.get_outputs()})
    anchors = consts.get(nms_inputs[2]) if len(nms_inputs) > 2 and nms_inputs[2] else None
    if anchors is not None:
        anchors = anchors.reshape(-1, 4)
    inp = sess.get_inputs()[0]
    n_batch, _, in_h, in_w = inp.shape
    if not isinstance(n_batch, int):
        n_batch = 1
    ann = json.loads((Path(val_dir) / "annotations.json").read_text())
    results, t_infer = [], 0.0
    entries = ann["images"]
    for first in range(0, len(entries), n_batch):
        group = entries[first:first + n_batch]
        imgs = [read_png(Path(val_dir) / "images" / e["file_name"]) for e in group]
        x = np.concatenate([to_input(im, in_h, in_w, pre) for im in imgs] +
                           [to_input(imgs[-1], in_h, in_w, pre)] * (n_batch - len(imgs)))
        t = time.perf_counter()
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {inp.name: x})))
        t_infer += time.perf_counter() - t
        env = run_tail(tail, consts, outs)
        boxes_all, scores_all = env[nms_inputs[0]], env[nms_inputs[1]]
        for s, (e, im) in enumerate(zip(group, imgs)):
            bx = boxes_all[s]
            if bx.ndim == 3:  # [B,1,4] shared boxes
                bx = bx[:, 0]
            corners = decode_boxes(bx, anchors, int(attrs.get("box_coding", 0)))
            kb, ks, kc = nms_image(corners, scores_all[s], attrs)
            h, w = im.shape[:2]
            # As `kiln detect`: boxes all within [-1.5, 1.5] are normalized, else input pixels.
            normalized = len(kb) > 0 and bool(np.all(np.abs(kb) <= 1.5))
            fx, fy = (w, h) if normalized else (w / in_w, h / in_h)
            for b, sc, c in zip(kb.astype(np.float64), ks, kc):
                x0, x1 = np.clip([b[0] * fx, b[2] * fx], 0, w)
                y0, y1 = np.clip([b[1] * fy, b[3] * fy], 0, h)
                results.append({"image_id": e["id"], "category_id": int(c),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "score": float(sc)})
    Path(out_path).write_text(json.dumps(results) + "\n")
    return {"images": len(entries), "detections": len(results), "infer_seconds": round(t_infer, 3),
            "ms_per_image": round(1000 * t_infer / max(len(entries), 1), 3), "nms": attrs,
            "onnxruntime": ort.__version__}


# ---------------------------------------------------------------- run

def cmd_run(a):
    out = Path(a.out)
    (out / "plans").mkdir(parents=True, exist_ok=True)
    binary = Path(a.kiln)
    models = [("folded", Path(a.model))] + ([("bn", Path(a.bn_model))] if a.bn_model else [])
    pre_path = Path(a.preprocess) if a.preprocess else Path(a.model).parent / "detector.preprocess.json"
    pre = json.loads(pre_path.read_text()) if pre_path.exists() else {}
    calib = Path(a.calib)
    calib_images = calib / "images" if (calib / "images").is_dir() else calib
    meta = {"device": a.device, "host": platform.node(), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "kiln": kiln(binary, "--version")[0].strip(), "models": {t: str(p) for t, p in models},
            "val": str(a.val), "calib": str(calib_images), "preprocess": pre, "guard_bound": a.guard_bound,
            "configs": {}}
    if (out / "meta.json").exists():  # a second run into the same folder keeps the first one's records
        meta["configs"] = json.loads((out / "meta.json").read_text()).get("configs", {})
    try:
        meta["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                        text=True).stdout.strip()
    except OSError:
        pass
    timing_cache = out / "plans" / "timing.cache"
    # `kiln compare` input: the first validation image, preprocessed as kiln does.
    (out / "compare").mkdir(exist_ok=True)
    first = json.loads((Path(a.val) / "annotations.json").read_text())["images"][0]["file_name"]
    sample = out / "compare" / "input.npy"
    _, in_h, in_w = model_input(models[0][1])
    np.save(sample, to_input(read_png(Path(a.val) / "images" / first), in_h, in_w, pre))
    wanted = set(a.only or [])
    for tag, model in models:
        for name, flags, needs_calib in configs(a.device, a.guard_bound):
            config = f"{tag}_{name}"
            if wanted and config not in wanted:
                continue
            plan = out / "plans" / f"{config}.plan"
            log, rec = [], {"model": str(model)}
            print(f"[{config}] building", flush=True)
            try:
                cmd = ["build", model, "-o", plan, "--device", a.device, *flags]
                if a.device == "cuda":
                    cmd += ["--timing-cache", timing_cache]
                if needs_calib:
                    cmd += ["--calib", calib_images, *norm_flags(pre)]
                    if a.calib_batches:
                        cmd += ["--calib-batches", a.calib_batches]
                _, rec["build_seconds"] = kiln(binary, *cmd, log=log)
                rec["inspect"] = inspect_lines(binary, plan)
                print(f"[{config}] built in {rec['build_seconds']:.1f} s; evaluating", flush=True)
                ev = ["eval", plan, "--dataset", a.val, "--out", out / f"{config}.json"]
                if pre_path.exists():
                    ev += ["--preprocess", pre_path]
                stdout, rec["eval_seconds"] = kiln(binary, *ev, log=log)
                m = re.search(r"([\d.]+) ms/image", stdout)
                rec["eval_ms_per_image"] = float(m.group(1)) if m else None
                rec["eval_output"] = stdout.strip().splitlines()
                if name != "fp32":
                    rec["compare"] = layer_compare(binary, model, plan, sample, out / "compare" / f"{config}.json")
            except RuntimeError as e:
                rec["error"] = str(e)
                print(f"[{config}] FAILED: {e}", flush=True)
            rec["commands"] = log
            meta["configs"][config] = rec
            (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if not wanted or "onnxruntime_fp32" in wanted:
        prenms = Path(a.prenms) if a.prenms else Path(a.model).with_suffix("").with_suffix(".prenms.onnx")
        print(f"[onnxruntime_fp32] {prenms}", flush=True)
        t = time.perf_counter()
        rec = run_onnxruntime(Path(a.model), prenms, a.val, pre, out / "onnxruntime_fp32.json", a.ort_threads)
        rec["seconds"] = round(time.perf_counter() - t, 3)
        rec["model"] = str(prenms)
        meta["configs"]["onnxruntime_fp32"] = rec
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    failed = [c for c, r in meta["configs"].items() if "error" in r]
    print(f"wrote {out}/ ({len(meta['configs'])} configurations{', failed: ' + ', '.join(failed) if failed else ''})")
    return 1 if failed else 0


# ---------------------------------------------------------------- score

def coco_map(gt, results):
    """(mAP@[.5:.95], AP50) with pycocotools; its progress prints are swallowed."""
    from pycocotools.cocoeval import COCOeval
    if not results:
        return 0.0, 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return float(e.stats[0]), float(e.stats[1])


def delta(v, ref):
    d = round(v - ref, 4)
    return "0.0000" if d == 0 else f"{d:+.4f}"


def int8_summary(lines):
    """From `kiln inspect`'s int8 line: the INT8 conv count, and the guard's
    "error before -> after, N layers back to float"."""
    text = " ".join(l for l in lines if l.startswith("int8:"))
    convs = re.search(r"(\d+) conv layers INT8", text)
    g = re.search(r"output error ([\d.e+-]+) -> ([\d.e+-]+).*?(\d+) layer\(s\) returned", text)
    guard = f"error {float(g.group(1)):.4f} -> {float(g.group(2)):.4f}, {g.group(3)} layers back to float" if g else ""
    return (convs.group(1) if convs else ""), guard


def cmd_score(a):
    from pycocotools.coco import COCO
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(Path(a.val) / "annotations.json"))
    # Several run folders (one device call each) make one table; later ones win.
    meta, files = {"configs": {}}, {}
    for d in map(Path, a.out):
        if (d / "meta.json").exists():
            m = json.loads((d / "meta.json").read_text())
            meta.update({k: v for k, v in m.items() if k != "configs"})
            meta["configs"].update(m["configs"])
        files.update({p.stem: p for p in d.glob("*.json") if p.name != "meta.json" and not p.name.startswith("scores")})
    scores = {c: coco_map(gt, json.loads(p.read_text())) for c, p in sorted(files.items())}
    out = Path(a.out[0])
    order = ["onnxruntime_fp32"] + [c for c in meta["configs"] if c != "onnxruntime_fp32"]
    order += [c for c in sorted(scores) if c not in order]

    def base(config):
        return "folded_fp32" if config == "onnxruntime_fp32" else config.split("_")[0] + "_fp32"

    dev = meta.get("device", "?")
    print(f"Shapes detector, {len(gt.getImgIds())} validation images; kiln engines on {dev} "
          f"({meta.get('kiln', '')}, commit {meta.get('commit', '?')[:10]}), {meta.get('date', '')}.\n")
    print("| config | mAP@[.5:.95] | AP50 | Δ mAP vs FP32 | Δ AP50 vs FP32 | eval ms/image | INT8 convs | guard "
          "| lowest layer cosine (kiln compare, 1 image) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for c in order:
        if c not in scores:
            continue
        m, ap50 = scores[c]
        b = scores.get(base(c))
        dm = delta(m, b[0]) if b and c != base(c) else "-"
        d50 = delta(ap50, b[1]) if b and c != base(c) else "-"
        rec = meta["configs"].get(c, {})
        ms = rec.get("eval_ms_per_image")  # kiln eval's preprocess + engine time; onnxruntime's is not alike
        ms = f"{ms:.2f}" if isinstance(ms, (int, float)) else ""
        int8, guard = int8_summary(rec.get("inspect", []))
        worst = rec.get("compare", {}).get("worst", [])
        worst = f"{worst[0]['cosine']:.5f} `{worst[0]['layer']}` ({worst[0]['precision']})" if worst else ""
        print(f"| {c} | {m:.4f} | {ap50:.4f} | {dm} | {d50} | {ms} | {int8} | {guard} | {worst} |")
    (out / "scores.json").write_text(json.dumps({c: {"mAP": s[0], "AP50": s[1]} for c, s in scores.items()},
                                                indent=1) + "\n")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build and evaluate every configuration (numpy + onnxruntime + kiln)")
    r.add_argument("--device", choices=["cpu", "cuda"], required=True)
    r.add_argument("--model", required=True, help="the folded export, ending in EfficientNMS_TRT")
    r.add_argument("--bn-model", help="the BatchNormalization export (also built and evaluated)")
    r.add_argument("--prenms", help="pre-NMS export for onnxruntime (default: MODEL with .prenms.onnx)")
    r.add_argument("--preprocess", help="normalization JSON (default: detector.preprocess.json beside MODEL)")
    r.add_argument("--val", required=True, help="validation set (shapes.py --seed 2): images/ + annotations.json")
    r.add_argument("--calib", required=True, help="calibration images (shapes.py --seed 3), or their images/ folder")
    r.add_argument("--calib-batches", type=int, default=0, help="use only the first N calibration batches")
    r.add_argument("--out", required=True)
    r.add_argument("--kiln", default=str(ROOT / "build" / "kiln"), help="kiln binary (default: build/kiln)")
    r.add_argument("--guard-bound", type=float, default=0.02, help="--int8-guard-bound (default 0.02)")
    r.add_argument("--only", nargs="*", help="configurations to run (e.g. folded_fp32 onnxruntime_fp32)")
    r.add_argument("--ort-threads", type=int, default=0, help="onnxruntime intra-op threads (0: its default)")
    s = sub.add_parser("score", help="mAP of every result file with pycocotools; prints the Markdown table")
    s.add_argument("out", nargs="+", help="run folder(s); several are merged into one table")
    s.add_argument("--val", required=True)
    a = ap.parse_args(argv)
    return cmd_run(a) if a.cmd == "run" else cmd_score(a)


if __name__ == "__main__":
    sys.exit(main())
