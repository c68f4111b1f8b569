"""kiln: parse ONNX models, build inference engines, serialize plans and run them.

    import numpy as np, kiln
    net = kiln.parse_onnx("model.onnx")
    plan = kiln.Builder(device="cpu").build(net)      # bytes
    engine = kiln.Runtime().deserialize(plan)
    ctx = engine.create_context()
    out = ctx.run({"input": np.zeros(engine.inputs[0].shape, np.float32)})

Errors are raised as kiln.Error subclasses that also derive from the
matching builtin: BadInputError (ValueError), UnsupportedError
(NotImplementedError), UsageError and InternalError (RuntimeError); each has
a ``code`` attribute ("bad_input", "unsupported", "usage", "internal").
"""

from ._kiln import (
    BadInputError,
    Builder,
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
    load_plugin_library,
    parse_onnx,
    version,
    write_plan,
)

__version__ = version()

__all__ = [
    "BadInputError",
    "Builder",
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
    "load_plugin_library",
    "parse_onnx",
    "version",
    "write_plan",
]
