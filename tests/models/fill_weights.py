"""Refill the float weights of a graph-only ONNX file (tests/models/graphs/*.onnx,
exported with external weights that are not kept) from a seed. The result is a
self-contained model for kiln and onnxruntime.

Random weights alone let activations grow layer by layer (to ~1e3 in SSDlite),
which makes the nets so ill-conditioned that a 1e-7 input change moves outputs
by 1e-3 and thresholds like Clip(0, 6) meaningless. So, like a trained net,
each Conv/Gemm output is normalized to unit standard deviation on a random
input (onnxruntime measures it, level by level in graph order).

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


def layer_levels(graph, layers):
    """Groups the layers so that a group only depends on layers of earlier groups."""
    producer = {o: n for n in graph.node for o in n.output}
    is_layer = {id(n) for n in layers}
    memo = {}

    def level(node):  # 1 + deepest layer upstream (layers count, other ops pass through)
        key = id(node)
        if key not in memo:
            memo[key] = 0  # guards against revisits; graphs are acyclic
            up = max([level(producer[i]) for i in node.input if i in producer] or [0])
            memo[key] = up + (1 if key in is_layer else 0)
        return memo[key]

    groups = {}
    for n in layers:
        groups.setdefault(level(n), []).append(n)
    return [groups[k] for k in sorted(groups)]


def normalize_layers(model):
    import onnxruntime as ort

    layers = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm")]
    inits = {i.name: i for i in model.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for i in model.graph.input:
        if i.name not in inits:
            dims = [d.dim_value if d.dim_value > 0 else 1 for d in i.type.tensor_type.shape.dim]
            feeds[i.name] = rng.standard_normal(dims).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    # One level at a time: a layer is scaled only once everything upstream is final.
    for group in layer_levels(model.graph, layers):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        del probe.graph.output[:]
        for n in group:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(n.output[0]))
        sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
        for n, out in zip(group, sess.run(None, feeds)):
            std = float(out.astype(np.float64).std())
            if not np.isfinite(std) or std <= 0:
                continue
            for name in n.input[1:3]:
                if name in inits:
                    arr = numpy_helper.to_array(inits[name])
                    inits[name].CopyFrom(numpy_helper.from_array((arr / std).astype(arr.dtype), name))


def fill(graph_path, out_path, seed=0, normalize=True):
    model = onnx.load(graph_path, load_external_data=False)
    role = roles(model.graph)
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type)
        rng = np.random.default_rng(seed * 1000003 + zlib.crc32(init.name.encode()))
        arr = values(role.get(init.name, "other"), tuple(init.dims), rng).astype(dtype)
        init.CopyFrom(numpy_helper.from_array(arr, init.name))
    if normalize:
        normalize_layers(model)
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
