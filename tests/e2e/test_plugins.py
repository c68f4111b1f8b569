"""Plugins through the CLI: the example plugin library (examples/identity_plugin)
loaded with --plugins by build, run, bench and inspect, and the one-line errors
for a missing library, a missing plugin and a plan that needs one."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from conftest import KILN, kiln, one_line_error

PLUGIN = Path(os.environ.get(
    "KILN_EXAMPLE_PLUGIN", Path(KILN).resolve().parent / "examples" / "identity_plugin" / "libkiln_example_plugin.so"))


def identity_model(path, note=None, dtype=TensorProto.FLOAT):
    """x -> ExampleIdentity (domain com.example) -> t -> Relu -> y; outputs y and t."""
    attrs = {} if note is None else {"note": note}
    nodes = [helper.make_node("ExampleIdentity", ["x"], ["t"], name="ident", domain="com.example", **attrs),
             helper.make_node("Relu", ["t"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, [2, 3, 4])],
                          [helper.make_tensor_value_info("y", dtype, [2, 3, 4]),
                           helper.make_tensor_value_info("t", dtype, [2, 3, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(m, str(path))
    return path


def test_example_plugin_library_exists():
    assert PLUGIN.is_file(), f"build the kiln_example_plugin target first ({PLUGIN} is missing)"


def test_build_run_bench_inspect_with_plugin(tmp_path):
    model = identity_model(tmp_path / "ident.onnx", note="example")
    plan = tmp_path / "ident.plan"
    kiln("build", model, "-o", plan, "--plugins", PLUGIN)
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    kiln("run", plan, "--plugins", PLUGIN, "--input", f"x={tmp_path / 'x.npy'}", "--outdir", tmp_path / "out")
    t = np.load(tmp_path / "out" / "t.npy")
    y = np.load(tmp_path / "out" / "y.npy")
    assert np.array_equal(t, x)
    assert np.array_equal(y, np.maximum(x, 0))

    bench = json.loads(kiln("bench", plan, "--plugins", PLUGIN, "--iterations", 2, "--warmup", 0, "--json").stdout)
    assert bench["iterations"] == 2
    for target in (model, plan):
        info = json.loads(kiln("inspect", target, "--plugins", PLUGIN, "--json").stdout)
        layer = next(l for l in info["layers"] if l["name"] == "ident")
        assert layer["path"] == "plugin"
        assert layer["op_type"].endswith("ExampleIdentity")


def test_plugin_given_twice_and_other_dtypes(tmp_path):
    model = identity_model(tmp_path / "ident.onnx", dtype=TensorProto.INT32)
    plan = tmp_path / "ident.plan"
    kiln("build", model, "-o", plan, "--plugins", PLUGIN, "--plugins", PLUGIN)
    x = np.arange(-12, 12, dtype=np.int32).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", x)
    kiln("run", plan, "--plugins", PLUGIN, "--input", f"x={tmp_path / 'x.npy'}", "--outdir", tmp_path / "out")
    assert np.array_equal(np.load(tmp_path / "out" / "t.npy"), x)


def test_missing_library_is_a_bad_input(tmp_path):
    model = identity_model(tmp_path / "ident.onnx")
    missing = tmp_path / "libnope.so"
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", missing, check=False), 3, str(missing))
    not_a_library = tmp_path / "libfake.so"
    not_a_library.write_text("not an ELF file")
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", not_a_library, check=False), 3,
                   str(not_a_library))


def test_op_without_its_plugin_is_unsupported(tmp_path):
    model = identity_model(tmp_path / "ident.onnx")
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", check=False), 4, "ExampleIdentity", "ident")


def test_plan_that_needs_a_plugin(tmp_path):
    model = identity_model(tmp_path / "ident.onnx")
    plan = tmp_path / "ident.plan"
    kiln("build", model, "-o", plan, "--plugins", PLUGIN)
    one_line_error(kiln("run", plan, "--random-inputs", 1, "--outdir", tmp_path / "o", check=False), 3,
                   str(plan), "needs plugin ExampleIdentity (version 1, namespace '')", "--plugins")
    one_line_error(kiln("bench", plan, "--iterations", 1, check=False), 3, "needs plugin ExampleIdentity")


def test_field_of_the_wrong_type(tmp_path):
    model = identity_model(tmp_path / "ident.onnx", note=5)
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", PLUGIN, check=False), 3,
                   "ExampleIdentity 'ident'", "'note'", "string")


def test_unknown_plugin_version(tmp_path):
    m = onnx.load(str(identity_model(tmp_path / "ident.onnx")))
    m.graph.node[0].attribute.append(helper.make_attribute("plugin_version", "7"))
    onnx.save(m, str(tmp_path / "v7.onnx"))
    one_line_error(kiln("build", tmp_path / "v7.onnx", "-o", tmp_path / "x.plan", "--plugins", PLUGIN, check=False),
                   4, "ExampleIdentity", "version '7'", "ExampleIdentity (version 1, namespace '')")


def compile_library(tmp_path, name, source):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed to build the test libraries"
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    lib = tmp_path / f"lib{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    return lib


def test_library_from_another_api_version_or_without_creators(tmp_path):
    model = identity_model(tmp_path / "ident.onnx")
    # Entry points written by hand: one claims API version 99, one adds nothing.
    other = compile_library(tmp_path, "otherapi", "int kiln_register_plugins(void* r, int v) { return -99; }\n")
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", other, check=False), 4,
                   str(other), "plugin API version 99")
    empty = compile_library(tmp_path, "empty", "int kiln_register_plugins(void* r, int v) { return 0; }\n")
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", empty, check=False), 4,
                   str(empty), "registers no kiln plugins")
    plain = compile_library(tmp_path, "plain", "int unrelated(void) { return 1; }\n")
    one_line_error(kiln("build", model, "-o", tmp_path / "x.plan", "--plugins", plain, check=False), 4,
                   str(plain), "registers no kiln plugins")
