"""Shared fixtures for the kiln Python binding tests: small ONNX models made
with onnx.helper, and the repository's seed model."""
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED_MODEL = REPO / "tests" / "models" / "seed_cbr_ssd.onnx"


def make_tiny_model(path, rng, batch=2):
    """x[batch,8] -> Gemm(W,b) -> Relu -> Softmax = probs (fp32), ArgMax(probs) = label (int64);
    batch "N" makes the batch dimension symbolic."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = rng.standard_normal((8, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="fc"),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("Softmax", ["r"], ["probs"], name="softmax", axis=-1),
        helper.make_node("ArgMax", ["probs"], ["label"], name="argmax", axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("label", TensorProto.INT64, [batch]),
        ],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def ort_run(path, feeds):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_model(tmp_path, rng):
    return make_tiny_model(tmp_path / "tiny.onnx", rng)


@pytest.fixture
def dynamic_model(tmp_path, rng):
    """The tiny model with a symbolic batch dimension N."""
    return make_tiny_model(tmp_path / "dynamic.onnx", rng, batch="N")


@pytest.fixture
def exact_model(tmp_path):
    """The INT8 tests' conv/relu model with dyadic weights (int8_support.py)."""
    from int8_support import conv_relu_model
    return conv_relu_model(tmp_path / "exact.onnx", exact=True)


@pytest.fixture
def gauss_model(tmp_path):
    """The same model with Gaussian weights."""
    from int8_support import conv_relu_model
    return conv_relu_model(tmp_path / "gauss.onnx", exact=False)
