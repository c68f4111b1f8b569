#!/usr/bin/env python3
"""Writes the small seed inputs for kiln's fuzz targets into fuzz/corpus/.

ONNX seeds are tiny hand-made models (each a few hundred bytes) covering the
importer's main paths: a plain op, weights, a Shape->Reshape chain that shape
inference must fold, an external-data reference, and a model-local function.
Image seeds (PNG, JPEG, BMP, TGA, GIF, PNM, HDR, PSD; some cut off) come from
the hand-written encoders in image_seeds.py, and regressions/image_decode_fuzz/
gets files of ~100 bytes declaring 60000 x 60000 and 16000 x 16000 pixels
and the fixed crash inputs it can rebuild.
The plan seed is built by kiln itself: pass the make_plan_seed binary from the
fuzz build (scripts/fuzz.sh builds it) to regenerate it.

  python3 fuzz/make_seeds.py [build-fuzz/fuzz/make_plan_seed]
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import image_seeds

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
OPSET = [helper.make_opsetid("", 17)]


def model(nodes, inputs, outputs, inits=(), functions=(), opset=OPSET):
    g = helper.make_graph(nodes, "seed", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=opset, functions=list(functions))
    m.ir_version = 8
    return m


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def relu():
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                 [vi("x", [1, 4])], [vi("y", [1, 4])])


def conv():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.array([0.5, -0.5], np.float32), "b")
    n = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1],
                         kernel_shape=[3, 3])
    return model([n], [vi("x", [1, 1, 4, 4])], [vi("y", [1, 2, 4, 4])], [w, b])


def conv_dynamic():
    # conv() with a symbolic batch: the seed of a batch-profile plan.
    m = conv()
    for vinfo in (m.graph.input[0], m.graph.output[0]):
        vinfo.type.tensor_type.shape.dim[0].dim_param = "N"
    return m


def shape_reshape():
    # y = Reshape(x, Concat(Shape(x)[0:1], [-1])): foldable only by shape inference.
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Slice", ["s", "st", "en"], ["s0"], name="slice"),
        helper.make_node("Concat", ["s0", "m1"], ["ns"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "ns"], ["y"], name="reshape"),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "st"),
             numpy_helper.from_array(np.array([1], np.int64), "en"),
             numpy_helper.from_array(np.array([-1], np.int64), "m1")]
    return model(nodes, [vi("x", [2, 3, 4])], [vi("y", [2, 12])], inits)


def external_data():
    # The weight lives in a file next to the model; the fuzz target resolves
    # it against a missing folder, so this seed exercises the refusal path.
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], vals=[])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        e = w.external_data.add()
        e.key, e.value = k, v
    w.ClearField("float_data")
    n = helper.make_node("Add", ["x", "w"], ["y"], name="add")
    return model([n], [vi("x", [4])], [vi("y", [4])], [w])


def local_function():
    f = helper.make_function(
        "seed.local", "AddRelu", ["a", "b"], ["c"],
        [helper.make_node("Add", ["a", "b"], ["t"]), helper.make_node("Relu", ["t"], ["c"])],
        OPSET)
    n = helper.make_node("AddRelu", ["x", "x"], ["y"], name="fn", domain="seed.local")
    return model([n], [vi("x", [1, 3])], [vi("y", [1, 3])], functions=[f],
                 opset=OPSET + [helper.make_opsetid("seed.local", 1)])


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    assert len(data) < 10 * 1024, path


def main():
    onnx_dir = os.path.join(CORPUS, "onnx_importer_fuzz")
    for name, fn in (("relu", relu), ("conv", conv), ("shape_reshape", shape_reshape),
                     ("external_data", external_data), ("local_function", local_function)):
        write(os.path.join(onnx_dir, name + ".onnx"), fn().SerializeToString())

    npy_dir = os.path.join(CORPUS, "npy_reader_fuzz")
    arrays = {
        "f4": np.arange(6, dtype="<f4").reshape(2, 3),
        "f2": np.array([1.5, -2.0, 0.0], dtype="<f2"),
        "i1": np.array([-1, 2, 3], dtype="|i1"),
        "u1": np.array([[1, 2], [3, 4]], dtype="|u1"),
        "i4": np.array([7, -8], dtype="<i4"),
        "i8": np.array([[1 << 40]], dtype="<i8"),
        "b1": np.array([True, False, True], dtype="|b1"),
        "f4_scalar": np.array(3.0, dtype="<f4"),
        "f4_empty": np.zeros((0, 2), dtype="<f4"),
    }
    for name, a in arrays.items():
        path = os.path.join(npy_dir, name + ".npy")
        np.save(path, a)
        assert os.path.getsize(path) < 10 * 1024

    img_dir = os.path.join(CORPUS, "image_decode_fuzz")
    for name, data in image_seeds.seeds().items():
        write(os.path.join(img_dir, name), data)
    reg_dir = os.path.join(HERE, "regressions", "image_decode_fuzz")
    for w, h in ((60000, 60000), (16000, 16000)):
        for ext, data in image_seeds.oversized_headers(w, h).items():
            write(os.path.join(reg_dir, "oversized_%dx%d.%s" % (w, h, ext)), data)
    # Headers cut off before their size: stb returned 0-pixel images, which
    # `kiln detect` then indexed (found by image_decode_fuzz).
    write(os.path.join(reg_dir, "zero_size_truncated.ppm"), b"P6")
    write(os.path.join(reg_dir, "zero_width_truncated.hdr"), image_seeds.hdr(image_seeds.pattern(5, 3))[:44])

    if len(sys.argv) > 1:
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "conv.onnx")
            onnx.save(conv(), src)
            out = os.path.join(CORPUS, "plan_reader_fuzz", "conv.plan")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.run([sys.argv[1], src, out], check=True)
            assert os.path.getsize(out) < 10 * 1024, out
            src = os.path.join(tmp, "relu.onnx")
            onnx.save(relu(), src)
            subprocess.run([sys.argv[1], src, os.path.join(CORPUS, "plan_reader_fuzz", "relu.plan")],
                           check=True)
            # A batch-profile container (KILNPROF): three specializations, shared constants.
            src = os.path.join(tmp, "conv_dynamic.onnx")
            onnx.save(conv_dynamic(), src)
            out = os.path.join(CORPUS, "plan_reader_fuzz", "conv_profile.plan")
            subprocess.run([sys.argv[1], src, out, "1", "2", "3"], check=True)
            assert os.path.getsize(out) < 10 * 1024, out


if __name__ == "__main__":
    main()
