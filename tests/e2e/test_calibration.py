"""`kiln calibrate`: every scale in the calibration cache against numpy.

The models' weights and inputs are multiples of powers of two small enough
that every activation is exact in float32, so onnxruntime (with every
intermediate exposed as an output) gives bit for bit the values kiln sees.
The thresholds come from those values: max |x| for minmax, and for entropy
and percentile tests/quant/thresholds_reference.py over a histogram built
here by the rule of src/quant/histogram.h (2048 bins of |x| over [0, 2^e),
2^e the smallest power of two above max |x|)."""
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, kiln, one_line_error

sys.path.insert(0, str(ROOT / "tests" / "quant"))
import thresholds_reference as ref  # noqa: E402

BINS = 2048


def dyadic(rng, shape, denominator, limit):
    return (rng.integers(-limit * denominator, limit * denominator + 1, size=shape) / denominator).astype(np.float32)


def conv(name, x, w, y, pads=1, strides=1):
    return helper.make_node("Conv", [x, w, f"{w}_b"], [y], name=name, pads=[pads] * 4, strides=[strides] * 2)


def save_model(nodes, inits, inputs, outputs, path):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def cnn_model(path, batch=2):
    """x[2,3,8,8] -> Conv3x3+Relu (r1) -> Conv3x3/2+Relu (r2) -> MaxPool2 (p) -> Conv1x1 (y)."""
    rng = np.random.default_rng(7)
    inits = {}
    for w, shape in (("w1", (4, 3, 3, 3)), ("w2", (4, 4, 3, 3)), ("w3", (2, 4, 1, 1))):
        inits[w] = dyadic(rng, shape, 4, 1)
        inits[f"{w}_b"] = dyadic(rng, shape[:1], 4, 1)
    nodes = [conv("conv1", "x", "w1", "c1"), helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             conv("conv2", "r1", "w2", "c2", strides=2), helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             conv("conv3", "p", "w3", "y", pads=0)]
    return save_model(nodes, inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], path)


def activations(model_path, batches):
    """name -> every value it takes over `batches` (list of input dicts), from onnxruntime."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    have = {o.name for o in m.graph.output}
    m.graph.output.extend(vi for vi in m.graph.value_info if vi.name not in have)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = {}
    for feed in batches:
        for n, v in list(feed.items()) + list(zip(names, sess.run(None, feed))):
            values.setdefault(n, []).append(np.asarray(v, np.float64).ravel())
    return {n: np.concatenate(v) for n, v in values.items()}


def histogram(v):
    amax = float(np.abs(v).max())
    if amax == 0:
        h = np.zeros(BINS, np.uint64)
        h[0] = v.size
        return h, 0.0
    e = int(np.floor(np.log2(amax))) + 1  # 2^e > amax >= 2^(e-1)
    while 2.0 ** (e - 1) > amax:
        e -= 1
    while 2.0 ** e <= amax:
        e += 1
    width = 2.0 ** e / BINS
    return np.bincount(np.floor(np.abs(v) / width).astype(np.int64), minlength=BINS).astype(np.uint64), width


def threshold(v, method, pct):
    if method == "minmax":
        return ref.minmax(float(v.min()), float(v.max()))
    h, width = histogram(v)
    if method == "percentile":
        return ref.percentile(h, width, pct)
    return ref.entropy(h, width)[1]


def scale_hex(t):
    return struct.pack(">f", np.float32(t / 127.0)).hex()


def read_cache(path):
    lines = Path(path).read_text().splitlines()
    return lines[0], dict(l.rsplit(": ", 1) for l in lines[1:])


def write_npy_batches(folder, batches, name="x"):
    folder.mkdir(parents=True, exist_ok=True)
    for k, b in enumerate(batches):
        np.save(folder / f"batch{k:03d}.npy", b[name])


@pytest.mark.parametrize("method,pct", [("minmax", None), ("percentile", 99.0), ("entropy", None)])
def test_npy_folder_scales_match_numpy(tmp_path, method, pct):
    model = cnn_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(11)
    batches = [{"x": dyadic(rng, (2, 3, 8, 8), 8, 4)} for _ in range(4)]
    write_npy_batches(tmp_path / "calib", batches)
    cache = tmp_path / "c.cache"
    args = ["calibrate", model, "--calib", tmp_path / "calib", "--calib-method", method, "--calib-cache", cache]
    if pct is not None:
        args += ["--calib-percentile", pct]
    r = kiln(*args)
    assert "4 batches" in r.stdout and method in r.stdout, r.stdout

    header, scales = read_cache(cache)
    assert header == {"minmax": "KILN-1-MinMax", "percentile": "KILN-1-Percentile", "entropy": "KILN-1-Entropy"}[method]
    # Conv+Relu fuse, so each fused layer's output keeps the Relu's name.
    assert set(scales) == {"x", "r1", "r2", "p", "y"}
    values = activations(model, batches)
    for name, got in scales.items():
        assert got == scale_hex(threshold(values[name], method, pct)), (name, got)

    # The same command gives the same bytes.
    first = cache.read_bytes()
    kiln(*args)
    assert cache.read_bytes() == first


def test_batch_cap_and_cache_reuse(tmp_path):
    model = cnn_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    batches = [{"x": dyadic(rng, (2, 3, 8, 8), 8, 4)} for _ in range(3)]
    write_npy_batches(tmp_path / "calib", batches)
    cache = tmp_path / "c.cache"
    r = kiln("calibrate", model, "--calib", tmp_path / "calib", "--calib-method", "minmax", "--calib-batches", 2,
             "--calib-cache", cache)
    assert "2 batches" in r.stdout
    values = activations(model, batches[:2])
    _, scales = read_cache(cache)
    for name, got in scales.items():
        assert got == scale_hex(ref.minmax(float(values[name].min()), float(values[name].max()))), name

    # Without --calib the cache is checked against the model and reused.
    assert "matches" in kiln("calibrate", model, "--calib-cache", cache).stdout
    text = cache.read_text()
    cache.write_text(text.replace("\nr2: ", "\nr2_other: "))
    one_line_error(kiln("calibrate", model, "--calib-cache", cache, check=False), 3, "'r2'", "'r2_other'", str(cache))


def png_bytes(rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_image_folder_scales_match_numpy(tmp_path):
    """Three images, batches of 2: sorted by name, the last batch filled up with the first image."""
    rng = np.random.default_rng(5)
    inits = {"w1": dyadic(rng, (4, 3, 3, 3), 4, 1), "w1_b": dyadic(rng, (4,), 4, 1)}
    model = save_model([conv("conv1", "x", "w1", "c1"), helper.make_node("Relu", ["c1"], ["r1"], name="relu1")],
                       inits, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                       [helper.make_tensor_value_info("r1", TensorProto.FLOAT, None)], tmp_path / "m.onnx")
    imgs = {"b.png": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
            "a.ppm": rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
            "c.png": rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)}  # halved by the bilinear resize
    folder = tmp_path / "images"
    folder.mkdir()
    for name, rgb in imgs.items():
        data = png_bytes(rgb) if name.endswith(".png") else b"P6\n8 8\n255\n" + rgb.tobytes()
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("ignored")
    mean, std, scale = np.array([8, 4, 2], np.float64), np.array([2, 1, 4], np.float64), 0.0625

    def chw(rgb):
        p = rgb.astype(np.float64)
        if p.shape[0] == 16:  # pixel centres fall halfway between source pixels: 2x2 means
            p = (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2]) / 4
        p = p[:, :, ::-1]  # --bgr
        return ((p * scale - mean) / std).transpose(2, 0, 1).astype(np.float32)

    order = [chw(imgs[n]) for n in ("a.ppm", "b.png", "c.png", "a.ppm")]
    batches = [{"x": np.stack(order[0:2])}, {"x": np.stack(order[2:4])}]
    cache = tmp_path / "c.cache"
    r = kiln("calibrate", model, "--calib", folder, "--calib-method", "percentile", "--calib-percentile", 99.5,
             "--mean", "8,4,2", "--std", "2,1,4", "--scale", scale, "--bgr", "--calib-cache", cache)
    assert "2 batches" in r.stdout and "3 images" in r.stdout, r.stdout
    _, scales = read_cache(cache)
    assert set(scales) == {"x", "r1"}
    values = activations(model, batches)
    for name, got in scales.items():
        assert got == scale_hex(threshold(values[name], "percentile", 99.5)), name


def test_multi_input_batch_subfolders(tmp_path):
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Add", ["a", "b/in"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    info = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("a", "b/in")]
    model = save_model(nodes, {}, info, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                       tmp_path / "m.onnx")
    batches = [{"a": dyadic(rng, (1, 4), 8, 4), "b/in": dyadic(rng, (1, 4), 8, 4)} for _ in range(3)]
    for k, b in enumerate(batches):
        d = tmp_path / "calib" / f"{k}"
        d.mkdir(parents=True)
        np.save(d / "a.npy", b["a"])
        np.save(d / "b_in.npy", b["b/in"])  # '/' in an input name is written '_'
    cache = tmp_path / "c.cache"
    kiln("calibrate", model, "--calib", tmp_path / "calib", "--calib-method", "minmax", "--calib-cache", cache)
    _, scales = read_cache(cache)
    values = activations(model, batches)
    assert set(scales) <= set(values) and {"a", "b/in", "y"} <= set(scales)
    for name, got in scales.items():
        assert got == scale_hex(ref.minmax(float(values[name].min()), float(values[name].max()))), name

    (tmp_path / "calib" / "1" / "a.npy").unlink()
    one_line_error(kiln("calibrate", model, "--calib", tmp_path / "calib", "--calib-cache", cache, check=False), 3,
                   "a.npy", str(tmp_path / "calib" / "1"))


def test_bad_folders_and_flags(tmp_path):
    model = cnn_model(tmp_path / "m.onnx")
    cache = tmp_path / "c.cache"
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(kiln("calibrate", model, "--calib", empty, "--calib-cache", cache, check=False), 2, str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "0.npy", np.zeros((2, 3, 8, 8), np.float32))
    (mixed / "1.png").write_bytes(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    one_line_error(kiln("calibrate", model, "--calib", mixed, "--calib-cache", cache, check=False), 2, str(mixed),
                   "mixes")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    np.save(wrong / "0.npy", np.zeros((1, 3, 8, 8), np.float32))
    one_line_error(kiln("calibrate", model, "--calib", wrong, "--calib-cache", cache, check=False), 3,
                   str(wrong / "0.npy"), "fp32[1,3,8,8]", "fp32[2,3,8,8]")
    good = tmp_path / "good"
    write_npy_batches(good, [{"x": np.zeros((2, 3, 8, 8), np.float32)}])
    one_line_error(kiln("calibrate", model, "--calib", good, "--calib-percentile", 99, "--calib-cache", cache,
                        check=False), 2, "--calib-percentile")
    one_line_error(kiln("calibrate", model, "--calib", good, "--mean", "1,2,3", "--calib-cache", cache, check=False),
                   2, "--mean", str(good))
    one_line_error(kiln("calibrate", model, "--calib", good, check=False), 2, "--calib-cache")
    one_line_error(kiln("calibrate", model, "--calib-cache", tmp_path / "absent.cache", check=False), 3,
                   "absent.cache")
    assert not cache.exists()


def test_qdq_export_runs_in_onnxruntime(tmp_path):
    model = cnn_model(tmp_path / "m.onnx")
    rng = np.random.default_rng(2)
    batches = [{"x": dyadic(rng, (2, 3, 8, 8), 8, 4)} for _ in range(2)]
    write_npy_batches(tmp_path / "calib", batches)
    out = tmp_path / "m.qdq.onnx"
    kiln("calibrate", model, "--calib", tmp_path / "calib", "--calib-method", "minmax", "-o", out)
    q = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    y = sess.run(None, batches[0])[0]
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, batches[0])[0]
    assert y.shape == want.shape
    assert np.abs(y - want).max() <= 0.1 * np.abs(want).max()
