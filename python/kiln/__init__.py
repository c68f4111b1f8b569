"""kiln: parse ONNX models, build inference engines, serialize plans and run them.

    import numpy as np, kiln
    net = kiln.parse_onnx("model.onnx")
    plan = kiln.Builder(device="cpu").build(net)      # bytes
    engine = kiln.Runtime().deserialize(plan)
    ctx = engine.create_context()
    out = ctx.run({"input": np.zeros(engine.inputs[0].shape, np.float32)})

INT8: subclass kiln.Calibrator (next_batch() returns {input name: array} or
None at the end) and build with kiln.Builder(int8=True, calibrator=...), or
get the scales with kiln.calibrate() and write a Q/DQ model with
kiln.export_qdq_onnx().

Errors are raised as kiln.Error subclasses that also derive from the
matching builtin: BadInputError (ValueError), UnsupportedError
(NotImplementedError), UsageError and InternalError (RuntimeError); each has
a ``code`` attribute ("bad_input", "unsupported", "usage", "internal").
"""

from ._kiln import (
    BadInputError,
    Builder,
    Calibrator,
    Context,
    Engine,
    Error,
    InternalError,
    LayerInfo,
    Network,
    Runtime,
    Summary,
    TensorInfo,
    UnsupportedError,
    UsageError,
    calibrate,
    export_qdq_onnx,
    load_plugin_library,
    parse_onnx,
    version,
    write_plan,
)

__version__ = version()

__all__ = [
    "BadInputError",
    "Builder",
    "Calibrator",
    "Context",
    "Engine",
    "Error",
    "InternalError",
    "LayerInfo",
    "Network",
    "Runtime",
    "Summary",
    "TensorInfo",
    "UnsupportedError",
    "UsageError",
    "calibrate",
    "export_qdq_onnx",
    "load_plugin_library",
    "parse_onnx",
    "version",
    "write_plan",
]
