"""Refill the float weights of a graph-only ONNX file (tests/models/graphs/*.onnx,
exported with external weights that are not kept) from a seed, with magnitudes
that keep activations in a sane range (He init for convs, randomized BatchNorm
statistics). The result is a self-contained model for kiln and onnxruntime.

    python3 tests/models/fill_weights.py GRAPH.onnx OUT.onnx [--seed S]
"""
import argparse
import os
import zlib

import numpy as np
import onnx
from onnx import numpy_helper

BN_ROLES = {1: "bn_scale", 2: "bn_bias", 3: "bn_mean", 4: "bn_var"}


def roles(graph):
    """initializer name -> (role, consumer op) from how the graph uses it."""
    out = {}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if node.op_type in ("Conv", "ConvTranspose"):
                out.setdefault(name, "conv_w" if k == 1 else "bias")
            elif node.op_type == "BatchNormalization":
                out.setdefault(name, BN_ROLES.get(k, "other"))
            elif node.op_type in ("Gemm", "MatMul"):
                out.setdefault(name, "fc_w" if k == 1 else "bias")
            else:
                out.setdefault(name, "other")
    return out


def values(role, shape, rng, trans_b=True):
    if role == "conv_w":
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        return rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
    if role == "fc_w":
        fan_in = shape[1] if trans_b and len(shape) == 2 else shape[0]
        return rng.standard_normal(shape) * np.sqrt(1.0 / max(fan_in, 1))
    if role in ("bias", "bn_bias", "bn_mean"):
        return rng.standard_normal(shape) * 0.1
    if role in ("bn_scale", "bn_var"):
        return rng.random(shape) + 0.5
    return rng.random(shape) + 0.5


def fill(graph_path, out_path, seed=0):
    model = onnx.load(graph_path, load_external_data=False)
    role = roles(model.graph)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        rng = np.random.default_rng(seed * 1000003 + zlib.crc32(init.name.encode()))
        arr = values(role.get(init.name, "other"), tuple(init.dims), rng).astype(dtype)
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, out_path)
    return out_path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    fill(a.graph, a.out, a.seed)
    print(f"{a.out}: {os.path.getsize(a.out) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
