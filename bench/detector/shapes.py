"""Procedural detection data set: coloured shapes and digit glyphs on textured backgrounds.

Every image is a pure function of (seed, index): the same seed gives the same images,
boxes and classes on any machine with numpy (the generator is numpy's PCG64 seeded
from SeedSequence([seed, index]), so images can be made in any order or in parallel).

    generate(seed, count) -> iterator of (image uint8 [300,300,3] RGB,
                                         boxes float32 [n,4] x1,y1,x2,y2,
                                         classes int64 [n] in 1..NUM_CLASSES)

Boxes are tight around the object's *visible* pixels (coverage >= 0.5, not hidden by
an object drawn later), in pixel-edge coordinates: a box covering pixel columns
3..9 is x1=3, x2=10. An object is never hidden by more than MAX_OCCLUSION of its area.

Seeds: TRAIN_SEED (1) for training, VAL_SEED (2) for the held-out validation set,
CALIB_SEED (3) for INT8 calibration images.

    python3 bench/detector/shapes.py --seed 2 --count 500 --out /tmp/shapes-val
writes DIR/images/000000.png ... and DIR/annotations.json (COCO format).
"""
import argparse
import json
import mmap
import multiprocessing as mp
import os
import struct
import sys
import time
import zlib

import numpy as np

SIZE = 300
TRAIN_SEED = 1
VAL_SEED = 2
CALIB_SEED = 3  # INT8 calibration images: neither trained on nor evaluated
CLASSES = ["circle", "ring", "square", "triangle", "star", "cross", "digit_2", "digit_4", "digit_7"]
NUM_CLASSES = len(CLASSES)  # category ids 1..NUM_CLASSES; 0 is background in the model
MIN_SIZE, MAX_SIZE = 16.0, 120.0  # nominal object extent in pixels (log-uniform)
MAX_OCCLUSION = 0.4
MAX_OBJECTS = 6

# 5x7 bitmaps, rows top to bottom.
FONT = {
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
}


def _glyph_cells(ch):
    """Centres (col, row) of the lit cells of a glyph, in cell units."""
    rows = FONT[ch]
    return np.array([(c + 0.5, r + 0.5) for r, line in enumerate(rows) for c, v in enumerate(line) if v == "#"],
                    np.float32)


_GLYPHS = {ch: _glyph_cells(ch) for ch in FONT}


# ---------------------------------------------------------------------------------------
# Signed distances (pixels, > 0 outside). Coverage is clip(0.5 - d, 0, 1): one pixel of
# anti-aliasing on every edge, computed on the object's patch only.

def _sd_convex(px, py, verts):
    """Approximate signed distance to a convex polygon given counter-clockwise (in
    image coordinates: y down) vertices [k,2]: the largest distance past an edge line."""
    d = None
    k = len(verts)
    for i in range(k):
        x0, y0 = verts[i]
        x1, y1 = verts[(i + 1) % k]
        ex, ey = x1 - x0, y1 - y0
        n = np.hypot(ex, ey)
        nx, ny = ey / n, -ex / n  # outward for this winding
        e = (px - x0) * nx + (py - y0) * ny
        d = e if d is None else np.maximum(d, e)
    return d


def _orient(verts):
    """Vertices ordered so that _sd_convex's normals point outward."""
    v = np.asarray(verts, np.float64)
    area = np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1])
    return v if area > 0 else v[::-1]


def _regular(cx, cy, r, k, rot):
    a = rot + np.arange(k) * (2 * np.pi / k)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def _rect(cx, cy, hw, hh, rot):
    c, s = np.cos(rot), np.sin(rot)
    corners = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
    return np.stack([cx + corners[:, 0] * c - corners[:, 1] * s, cy + corners[:, 0] * s + corners[:, 1] * c], 1)


def _object_sd(rng, cls, cx, cy, size, px, py):
    """Signed distance field of one object of class `cls` (1-based) centred at (cx, cy)
    with nominal extent `size`, over pixel-centre coordinates px, py."""
    name = CLASSES[cls - 1]
    r = size / 2
    rot = rng.uniform(0, 2 * np.pi)
    outline = rng.random() < 0.35
    stroke = max(2.0, r * rng.uniform(0.18, 0.3))
    if name == "circle":
        return np.hypot(px - cx, py - cy) - r
    if name == "ring":
        rho = np.hypot(px - cx, py - cy)
        inner = r * rng.uniform(0.45, 0.7)
        return np.maximum(rho - r, inner - rho)
    if name == "square":
        d = _sd_convex(px, py, _orient(_rect(cx, cy, r * 0.82, r * 0.82, rng.uniform(-0.5, 0.5))))
        return np.maximum(d, -d - stroke) if outline else d
    if name == "triangle":
        # Equilateral, corners jittered a little so not every triangle is the same.
        v = _regular(cx, cy, r, 3, rot) + rng.uniform(-0.08, 0.08, (3, 2)) * r
        d = _sd_convex(px, py, _orient(v))
        return np.maximum(d, -d - stroke) if outline else d
    if name == "star":
        inner_r = r * rng.uniform(0.38, 0.5)
        outer = _regular(cx, cy, r, 5, rot)
        inner = _regular(cx, cy, inner_r, 5, rot + np.pi / 5)
        d = _sd_convex(px, py, _orient(inner))
        for i in range(5):  # spike i: outer vertex i between inner vertices i-1 and i
            d = np.minimum(d, _sd_convex(px, py, _orient([inner[i - 1], outer[i], inner[i]])))
        return d
    if name == "cross":
        hw = r * rng.uniform(0.17, 0.27)
        a = rng.uniform(-0.4, 0.4)
        d1 = _sd_convex(px, py, _orient(_rect(cx, cy, r * 0.95, hw, a)))
        d2 = _sd_convex(px, py, _orient(_rect(cx, cy, hw, r * 0.95, a)))
        return np.minimum(d1, d2)
    # Digit: the 5x7 glyph scaled to size (height) x size*5/7*jitter (width), slightly
    # rotated, optionally bolder; distance is the Chebyshev distance to the nearest lit cell.
    cells = _GLYPHS[name[-1]]
    ch = size / 7.0
    cw = ch * rng.uniform(0.85, 1.2)
    a = rng.uniform(-0.25, 0.25)
    c, s = np.cos(a), np.sin(a)
    dx, dy = px - cx, py - cy
    u = (dx * c + dy * s) / cw + 2.5  # glyph columns, 0..5
    v = (-dx * s + dy * c) / ch + 3.5  # glyph rows, 0..7
    du = np.abs(u[..., None] - cells[:, 0]) - 0.5
    dv = np.abs(v[..., None] - cells[:, 1]) - 0.5
    d = np.min(np.maximum(du * cw, dv * ch), axis=-1)
    return d - rng.uniform(0.0, 0.25) * min(cw, ch)  # bolder strokes


def _extent(cls, size):
    """Half-extent of the patch that surely holds the object (digits are taller than
    wide, but rotation and width jitter can make them wider)."""
    return size * (0.75 if CLASSES[cls - 1].startswith("digit") else 0.6) + 2


# ---------------------------------------------------------------------------------------
# Backgrounds

def _upsample_matrix(n_out, n_in):
    """[n_out, n_in] linear interpolation weights (grid points spread over the image)."""
    pos = (np.arange(n_out) + 0.5) / n_out * (n_in - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    m = np.zeros((n_out, n_in), np.float32)
    if n_in == 1:
        m[:, 0] = 1
        return m
    w = pos - i0
    m[np.arange(n_out), i0] = 1 - w
    m[np.arange(n_out), i0 + 1] = w
    return m


_GRID = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)


def _background(rng):
    H = W = SIZE
    ys, xs = _GRID
    # Linear gradient between two colours along a random direction.
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * np.pi)
    t = ((xs - W / 2) * np.cos(a) + (ys - H / 2) * np.sin(a)) / (W * 0.75) + 0.5
    img = c0 + np.clip(t, 0, 1)[..., None] * (c1 - c0)
    img = img.astype(np.float32)
    # Low-frequency colour blotches.
    g = int(rng.integers(3, 9))
    grid = rng.normal(0, rng.uniform(0, 45), (g, g, 3)).astype(np.float32)
    my, mx = _upsample_matrix(H, g), _upsample_matrix(W, g)
    img += np.einsum("yi,ijc,xj->yxc", my, grid, mx, optimize=True)
    kind = rng.random()
    if kind < 0.45:  # stripes
        period = rng.uniform(5, 40)
        b = rng.uniform(0, np.pi)
        phase = (xs * np.cos(b) + ys * np.sin(b)) * (2 * np.pi / period)
        wave = np.sin(phase) if rng.random() < 0.5 else np.sign(np.sin(phase))
        img += wave[..., None] * rng.uniform(-50, 50, 3).astype(np.float32)
    elif kind < 0.6:  # checkerboard
        cell = rng.uniform(8, 40)
        chk = ((np.floor(xs / cell) + np.floor(ys / cell)) % 2) * 2 - 1
        img += chk[..., None] * rng.uniform(-40, 40, 3).astype(np.float32)
    # Clutter: line segments that are not objects, so edges alone do not mean "object".
    for _ in range(int(rng.integers(0, 5))):
        p0, p1 = rng.uniform(0, SIZE, 2), rng.uniform(0, SIZE, 2)
        half = rng.uniform(0.5, 3)
        color = rng.uniform(0, 255, 3).astype(np.float32)
        # Only the segment's bounding box is touched.
        x0 = int(max(0, min(p0[0], p1[0]) - half - 2)); x1 = int(min(W, max(p0[0], p1[0]) + half + 3))
        y0 = int(max(0, min(p0[1], p1[1]) - half - 2)); y1 = int(min(H, max(p0[1], p1[1]) + half + 3))
        px, py = xs[y0:y1, x0:x1] + 0.5, ys[y0:y1, x0:x1] + 0.5
        e = p1 - p0
        L2 = max(float(e @ e), 1e-6)
        tt = np.clip(((px - p0[0]) * e[0] + (py - p0[1]) * e[1]) / L2, 0, 1)
        dist = np.hypot(px - p0[0] - tt * e[0], py - p0[1] - tt * e[1]) - half
        cov = np.clip(0.5 - dist, 0, 1)[..., None]
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - cov) + cov * color
    return img


# ---------------------------------------------------------------------------------------

def render(seed, index):
    """Image `index` of the set `seed`: (image uint8 [H,W,3], boxes float32 [n,4] xyxy,
    classes int64 [n])."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(index)])))
    img = _background(rng)
    owner = np.full((SIZE, SIZE), -1, np.int16)  # which object each pixel shows (coverage >= 0.5)
    areas, classes, patches = [], [], []
    n_want = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(n_want):
        cls = int(rng.integers(1, NUM_CLASSES + 1))
        size = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE))))
        ext = _extent(cls, size)
        for _try in range(12):
            cx, cy = rng.uniform(ext, SIZE - ext, 2) if ext < SIZE / 2 else (SIZE / 2, SIZE / 2)
            x0, x1 = max(0, int(cx - ext)), min(SIZE, int(np.ceil(cx + ext)))
            y0, y1 = max(0, int(cy - ext)), min(SIZE, int(np.ceil(cy + ext)))
            py, px = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
            sd = _object_sd(rng, cls, cx, cy, size, px, py)
            cov = np.clip(0.5 - sd, 0, 1).astype(np.float32)
            mine = cov >= 0.5
            if mine.sum() < 30:
                continue
            # Reject a placement that would hide too much of an earlier object.
            hidden = owner[y0:y1, x0:x1][mine]
            ok, lost = True, 0
            if len(areas):
                lost = np.bincount(hidden[hidden >= 0], minlength=len(areas))
                ok = bool(np.all(visible - lost >= (1 - MAX_OCCLUSION) * np.array(areas)))
            if ok:
                break
        else:
            continue
        # Colour far enough from the local background, lightly shaded and noisy.
        bg = img[y0:y1, x0:x1][mine].mean(axis=0)
        best, color = -1.0, None
        for _c in range(8):
            c = rng.uniform(0, 255, 3)
            dist = float(np.linalg.norm(c - bg))
            if dist > best:
                best, color = dist, c
            if dist > 110:
                break
        shade = rng.uniform(-25, 25, 3) * ((px - cx) / max(size, 1))[..., None]
        field = color + shade + rng.standard_normal((y1 - y0, x1 - x0, 1)) * rng.uniform(0, 8)
        patch = img[y0:y1, x0:x1]
        img[y0:y1, x0:x1] = patch * (1 - cov[..., None]) + field.astype(np.float32) * cov[..., None]
        k = len(areas)
        owner[y0:y1, x0:x1][mine] = k
        patches.append((x0, y0, x1, y1))
        areas.append(int(mine.sum()))
        visible = np.append(visible - lost, areas[-1]) if k else np.array([areas[-1]])
        classes.append(cls)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 12))
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    boxes, keep = [], []
    for k in range(len(areas)):
        x0, y0, x1, y1 = patches[k]
        ys, xs = np.nonzero(owner[y0:y1, x0:x1] == k)
        if len(xs) == 0:
            continue
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
        keep.append(classes[k])
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(keep, np.int64)


def generate(seed, count, start=0):
    """Images start .. start+count-1 of the set `seed`, one (image, boxes, classes) at a time."""
    for i in range(start, start + count):
        yield render(seed, i)


# ---------------------------------------------------------------------------------------
# Parallel generation into one array (used by train.py) and PNG/COCO writing (CLI).

_SHARED = None  # (mmap, count): an anonymous shared mapping the forked workers inherit


def _fill(args):
    seed, start, count = args
    buf, total = _SHARED
    arr = np.ndarray((total, SIZE, SIZE, 3), np.uint8, buffer=buf)
    out = []
    for i in range(start, start + count):
        image, boxes, classes = render(seed, i)
        arr[i] = image
        out.append((boxes, classes))
    return start, out


def generate_arrays(seed, count, workers=None):
    """All `count` images of set `seed` as one uint8 [count,H,W,3] array plus lists of
    boxes and classes; the work is split over `workers` forked processes (default: all
    cores). Images travel through an anonymous shared mapping, not /dev/shm, which
    containers often keep small."""
    global _SHARED
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    buf = mmap.mmap(-1, max(1, count * SIZE * SIZE * 3))
    _SHARED = (buf, count)
    try:
        chunk = max(1, min(128, -(-count // (workers * 4))))
        jobs = [(seed, s, min(chunk, count - s)) for s in range(0, count, chunk)]
        boxes, classes = [None] * count, [None] * count
        pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
        for start, out in (pool.imap_unordered(_fill, jobs) if pool else map(_fill, jobs)):
            for j, (b, c) in enumerate(out):
                boxes[start + j], classes[start + j] = b, c
        if pool:
            pool.close()
            pool.join()
        images = np.frombuffer(buf, np.uint8, count * SIZE * SIZE * 3).reshape(count, SIZE, SIZE, 3).copy()
    finally:
        _SHARED = None
    buf.close()
    return images, boxes, classes


def encode_png(image, level=3):
    """uint8 [H,W,3] RGB -> PNG bytes (filter 0 on every row)."""
    h, w, _ = image.shape
    raw = np.zeros((h, w * 3 + 1), np.uint8)
    raw[:, 1:] = image.reshape(h, w * 3)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + chunk(b"IEND", b""))


def _write_range(args):
    seed, start, count, img_dir = args
    out = []
    for i in range(start, start + count):
        image, boxes, classes = render(seed, i)
        with open(os.path.join(img_dir, f"{i:06d}.png"), "wb") as f:
            f.write(encode_png(image))
        out.append((i, boxes, classes))
    return out


def write_dataset(seed, count, out_dir, workers=None):
    """DIR/images/NNNNNN.png and DIR/annotations.json (COCO: bbox [x,y,w,h] in pixels,
    area = w*h of the box, image ids = index + 1)."""
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    chunk = max(1, min(64, -(-count // (workers * 4))))
    jobs = [(seed, s, min(chunk, count - s), img_dir) for s in range(0, count, chunk)]
    if workers == 1:
        results = list(map(_write_range, jobs))
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(_write_range, jobs)
    images, annotations = [], []
    for part in results:
        for i, boxes, classes in part:
            images.append({"id": i + 1, "file_name": f"{i:06d}.png", "width": SIZE, "height": SIZE})
            for b, c in zip(boxes.tolist(), classes.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c),
                                    "bbox": [b[0], b[1], w, h], "area": float(w * h), "iscrowd": 0})
    coco = {"info": {"description": f"kiln shapes detection set, seed {seed}", "seed": seed, "count": count},
            "images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]}
    with open(os.path.join(out_dir, "annotations.json"), "w") as f:
        json.dump(coco, f)
    return coco


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a procedural shapes detection set (PNG + COCO JSON).")
    ap.add_argument("--seed", type=int, default=VAL_SEED,
                    help=f"set seed (train {TRAIN_SEED}, val {VAL_SEED}, calibration {CALIB_SEED})")
    ap.add_argument("--count", type=int, required=True, help="number of images")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    a = ap.parse_args(argv)
    if a.count < 1:
        ap.error("--count must be >= 1")
    t0 = time.time()
    coco = write_dataset(a.seed, a.count, a.out, a.workers)
    print(f"{a.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, seed {a.seed}, "
          f"{time.time() - t0:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
