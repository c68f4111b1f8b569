"""Trained models from PyPI wheels (bench/real_models/) on real photos: kiln's CPU
engine against onnxruntime. FP32 must agree to float rounding; INT8 (entropy
calibration) only at the task level: the same face / the same text lines found."""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import ROOT, kiln

sys.path.insert(0, str(ROOT / "bench"))
import real_models as rm  # noqa: E402

MODELS_DIR, PHOTOS_DIR = rm.HERE / "models", rm.HERE / "photos"
PHOTO = {"retinaface": "astronaut", "ppocr_det": "page"}  # one photo each model has work on


def need(path):
    if not path.exists():
        pytest.skip(f"{path} is missing: run `python3 bench/real_models.py fetch` (needs PyPI)")
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Per model: the model, its input name, the photo's input tensor and onnxruntime's outputs."""
    out = {}
    for model, cfg in rm.MODELS.items():
        src = MODELS_DIR / cfg["file"]
        if not src.exists():
            continue
        d = tmp_path_factory.mktemp(model)
        name = rm.input_name(src)
        x, _ = rm.preprocess(rm.read_png(need(PHOTOS_DIR / f"{PHOTO[model]}.png")), cfg)
        sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
        ref = {rm.file_stem(o.name): v for o, v in zip(sess.get_outputs(), sess.run(None, {name: x}))}
        out[model] = (d, src, name, x, ref)
    return out


def case(prepared, model):
    need(MODELS_DIR / rm.MODELS[model]["file"])
    return prepared[model]


@pytest.mark.parametrize("model", list(rm.MODELS))
def test_fp32_matches_onnxruntime(prepared, model):
    d, src, name, x, ref = case(prepared, model)
    # H and W are symbolic: refused until given, with the flag that gives them named.
    r = kiln("build", src, "-o", d / "nope.plan", check=False)
    assert r.returncode == 4 and f"--input-shape {name}=" in r.stderr, r.stderr
    kiln("build", src, "-o", d / "fp32.plan", *rm.shape_flag(name))
    got = _run(d / "fp32.plan", name, x, d / "fp32")
    assert set(got) == set(ref)
    for k in ref:
        f = rm.tensor_figures(got[k], ref[k])
        assert f["rel_l2"] <= 1e-3 and f["cosine"] >= 0.99999, (model, k, f)
    t = rm.task_figures(model, got, ref)
    if model == "retinaface":
        # the astronaut's one face, found by both at the same place
        assert t["faces_onnxruntime"] == 1 and t["faces_kiln"] == 1 and t["mean_matched_iou"] > 0.99, t
    else:
        # the page's lines of print: several boxes, all matched
        assert t["boxes_onnxruntime"] >= 5, t
        assert t["boxes_kiln"] == t["boxes_onnxruntime"] == t["matched_iou50"], t
        assert t["map_iou_0.3"] > 0.999, t


@pytest.mark.parametrize("model", list(rm.MODELS))
def test_int8_agrees_at_task_level(prepared, model):
    d, src, name, x, ref = case(prepared, model)
    calib = d / "calib"
    calib.mkdir(exist_ok=True)
    photos = [rm.read_png(p) for p in sorted(PHOTOS_DIR.glob("*.png"))]
    for k, img in enumerate(rm.calib_images(photos)):
        np.save(calib / f"{k:03d}.npy", rm.preprocess(img, rm.MODELS[model])[0])
    kiln("build", src, "-o", d / "int8.plan", *rm.shape_flag(name), "--int8", "--calib", calib,
         "--calib-method", "entropy")
    qconv = [l for l in kiln("inspect", d / "int8.plan").stdout.splitlines() if "kiln::QConv" in l]
    assert len(qconv) >= 20, "most convolutions should run in INT8"
    got = _run(d / "int8.plan", name, x, d / "int8")
    t = rm.task_figures(model, got, ref)
    if model == "retinaface":
        assert t["faces_kiln"] == t["faces_onnxruntime"] == t["matched_iou50"] == 1, t
        assert t["mean_matched_iou"] >= 0.8, t
    else:
        assert t["matched_iou50"] >= 0.8 * t["boxes_onnxruntime"] >= 4, t
        assert t["map_iou_0.3"] >= 0.8, t


def _run(plan, name, x, outdir):
    outdir.mkdir(parents=True, exist_ok=True)
    np.save(outdir / "input.npy", x)
    kiln("run", plan, "--input", f"{name}={outdir / 'input.npy'}", "--outdir", outdir)
    return {p.stem: np.load(p) for p in outdir.glob("*.npy") if p.stem != "input"}


def test_decoders_on_known_cases():
    """The numpy decoders both sides are judged by, on inputs with known answers."""
    # one anchor (stride 8, size 16, at cell (2, 3)) with a zero offset: its prior box
    loc = np.zeros((1, 16800, 4), np.float32)
    conf = np.zeros((1, 16800, 2), np.float32)
    conf[..., 0] = 1
    k = (2 * 80 + 3) * 2
    conf[0, k] = (0.1, 0.9)
    boxes, scores, _ = rm.decode_faces({"loc": loc, "conf": conf, "landmarks": np.zeros((1, 16800, 10))})
    np.testing.assert_allclose(boxes, [[28 - 8, 20 - 8, 28 + 8, 20 + 8]])
    # two blobs of text probability: two boxes, each grown by area * 1.6 / perimeter
    p = np.zeros((64, 64), np.float32)
    p[10:20, 5:45] = 0.9
    p[40:44, 30:34] = 0.8
    b, s = rm.decode_text(p)
    d1, d2 = 400 * 1.6 / 100, 16 * 1.6 / 16
    np.testing.assert_allclose(sorted(b.tolist()), sorted([[5 - d1, 10 - d1, 45 + d1, 20 + d1],
                                                           [30 - d2, 40 - d2, 34 + d2, 44 + d2]]))
    np.testing.assert_allclose(sorted(s), [0.8, 0.9], rtol=1e-6)
